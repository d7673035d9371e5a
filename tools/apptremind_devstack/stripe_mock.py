"""stripe-mock (Stripe's own API mock, a Go binary) on a free port, for tests and `make up`.

Install it with ``go install github.com/stripe/stripe-mock@latest``. The binary is looked up in
``$APPTREMIND_STRIPE_MOCK`` (a path), then on ``PATH``, then in ``$GOBIN`` / ``$GOPATH/bin`` / ``~/go/bin``.
stripe-mock validates requests against Stripe's OpenAPI spec and answers with canned fixtures: it keeps no
state, so what a test can check is that the right call was made and that its answer was used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from . import _osproc
from .ports import free_port, wait_for_port

ENV_BINARY = "APPTREMIND_STRIPE_MOCK"


def stripe_mock_binary() -> str | None:
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    found = shutil.which("stripe-mock")
    if found:
        return found
    go_dirs = [os.environ.get("GOBIN", ""), os.path.join(os.environ.get("GOPATH", ""), "bin")]
    go_dirs.append(str(Path.home() / "go" / "bin"))
    for directory in go_dirs:
        candidate = Path(directory) / "stripe-mock"
        if directory and candidate.is_file():
            return str(candidate)
    return None


class StripeMock:
    """One stripe-mock process serving plain HTTP on 127.0.0.1:port."""

    def __init__(self, port: int | None = None, log_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        binary = stripe_mock_binary()
        if binary is None:
            raise RuntimeError(
                "stripe-mock is not installed: go install github.com/stripe/stripe-mock@latest "
                f"(or set {ENV_BINARY} to the binary)"
            )
        if self._proc is not None:
            raise RuntimeError("stripe-mock already running")
        # Given only an HTTP address, stripe-mock still binds HTTPS on 12112, which a second instance (or
        # anything else) may hold; an empty port lets the system choose one.
        argv = [binary, "-http-addr", f"127.0.0.1:{self.port}", "-https-addr", "127.0.0.1:"]
        log_path = self.log_file or Path(os.devnull)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _osproc.terminate_group(proc.pid, 10.0)
        proc.wait(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
