"""Service process bootstrap: the gRPC server with health, reflection and readiness, plus its HTTP side port.

A service builds its servicers, hands them to `GrpcServer` with the service names they implement, and
calls `serve_until_signal()`. Health starts NOT_SERVING and follows the readiness checks (database, Kafka),
so a load balancer only routes calls once dependencies answer; on SIGTERM health flips to NOT_SERVING before
the server stops accepting calls and in-flight calls get `shutdown_grace_s` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pool  # type: ignore[import-untyped]
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from apptremind_gen.google_proto_descriptor_pool import default_google_proto_descriptor_pool

from .access_tokens import TokenVerifier
from .grpc_bridge import bind_service
from .http_side import SidePort
from .interceptors import server_interceptors
from .logs import get_logger
from .settings import ServiceSettings

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

Check = Callable[[], Awaitable[None]]

HEALTH_SERVICE_NAME: str = health.SERVICE_NAME

_log = get_logger("apptremind.server")


class Readiness:
    """Named async checks; a check raises when its dependency is not usable."""

    def __init__(self, *, check_timeout_s: float = 3.0) -> None:
        self._checks: dict[str, Check] = {}
        self._results: dict[str, bool] = {}
        self._refreshed = False
        self._draining = False
        self._check_timeout_s = check_timeout_s

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def refresh(self) -> dict[str, bool]:
        """Run every check (concurrently, each bounded by the check timeout) and return name -> passed."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run(name, self._checks[name]) for name in names))
        results = dict(zip(names, outcomes, strict=True))
        for name, passed in results.items():
            if passed and self._results.get(name) is False:
                _log.info("readiness_check_recovered", check=name)
        self._results = results
        self._refreshed = True
        return dict(results)

    async def _run(self, name: str, check: Check) -> bool:
        try:
            async with asyncio.timeout(self._check_timeout_s):
                await check()
        except Exception as exc:
            # Only the transition is logged: a dependency down for minutes must not flood the log.
            if self._results.get(name, True):
                _log.warning("readiness_check_failed", check=name, error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    def drain(self) -> None:
        """Report not ready from now on: the process is shutting down."""
        self._draining = True

    @property
    def results(self) -> dict[str, bool]:
        return dict(self._results)

    @property
    def ready(self) -> bool:
        return self._refreshed and not self._draining and all(self._results.values())


def db_check(pool: AsyncConnectionPool[Any], timeout_s: float = 2.0) -> Check:
    """Readiness of the service database: a connection from the pool answers `SELECT 1`."""

    async def check() -> None:
        async with asyncio.timeout(timeout_s), pool.connection(timeout=timeout_s) as conn:
            await conn.execute("SELECT 1")

    return check


def kafka_check(bootstrap_servers: str, timeout_s: float = 2.0) -> Check:
    """Readiness of Kafka: the cluster answers a metadata request."""
    admin: Any = None

    def probe() -> None:
        nonlocal admin
        if admin is None:
            # Imported here so processes without Kafka checks do not load librdkafka; the client is reused
            # because creating one per probe would open fresh broker connections every few seconds.
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        admin.list_topics(timeout=timeout_s)

    async def check() -> None:
        # list_topics blocks; its own timeout bounds the thread even when the awaiting task is cancelled.
        await asyncio.to_thread(probe)

    return check


def reflection_pool(service_names: Iterable[str]) -> Any:
    """A descriptor pool holding every file the named services need, for the reflection service.

    Generated services live in the generated pool, health and reflection in protobuf's default pool, and
    reflection reads one pool; so the files, with their imports such as google/protobuf/timestamp.proto,
    are copied into a fresh one.
    """
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: Any) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        pool.AddSerializedFile(file.serialized_pb)
        added.add(file.name)

    for name in service_names:
        for source in (default_google_proto_descriptor_pool, descriptor_pool.Default()):
            try:
                file = source.FindFileContainingSymbol(name)
            except KeyError:
                continue
            add(file)
            break
        else:
            raise LookupError(f"no descriptor for service {name!r}")
    return pool


def _health_servicer() -> Any:
    aio_health = getattr(health, "aio", None)
    if aio_health is not None:
        return aio_health.HealthServicer()
    return health.HealthServicer(experimental_non_blocking=True)


class GrpcServer:
    """One service process: a grpc.aio server, its health and reflection services, and the HTTP side port."""

    def __init__(
        self,
        settings: ServiceSettings,
        services: Sequence[tuple[object, str]],
        readiness: Readiness | None = None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self._verifier = verifier
        self._settings = settings
        self._services = list(services)
        self.service_names = [name for _, name in self._services]
        self.readiness = readiness if readiness is not None else Readiness()
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._side: SidePort | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._force_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._terminated = asyncio.Event()
        self.port = 0
        self.http_port = 0

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        server = grpc.aio.server(interceptors=server_interceptors(self._verifier))
        for servicer, name in self._services:
            server.add_generic_rpc_handlers((bind_service(servicer, name),))

        self._health = _health_servicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)

        names = [*self.service_names, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server, pool=reflection_pool(names))

        self.port = server.add_insecure_port(f"{self._settings.grpc_host}:{self._settings.grpc_port}")
        await server.start()
        self._server = server
        try:
            self._side = SidePort(self._settings.grpc_host, self._settings.http_port, self.readiness)
            self.http_port = await self._side.start()
        except BaseException:
            await server.stop(None)
            raise
        self._watch_task = asyncio.create_task(self._watch_readiness(), name="readiness-watch")
        _log.info(
            "server_started",
            grpc_port=self.port,
            http_port=self.http_port,
            services=self.service_names,
        )

    async def _set_health(self, status: int) -> None:
        for name in ("", *self.service_names):
            outcome = self._health.set(name, status)
            if inspect.isawaitable(outcome):
                await outcome

    async def _watch_readiness(self) -> None:
        serving: bool | None = None
        while True:
            try:
                await self.readiness.refresh()
                ready = self.readiness.ready
                if ready != serving:
                    status = health_pb2.HealthCheckResponse
                    await self._set_health(status.SERVING if ready else status.NOT_SERVING)
                    _log.info("serving_changed", serving=ready, checks=self.readiness.results)
                    serving = ready
            except Exception:
                # The watch must outlive any one bad refresh, or health would freeze in its last state.
                _log.exception("readiness_watch_error")
            await asyncio.sleep(self._settings.readiness_interval_s)

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: NOT_SERVING first, then refuse new calls; in-flight ones get `grace` seconds."""
        if self._server is None:
            return
        if self._stopping:
            await self._terminated.wait()
            return
        self._stopping = True
        grace = self._settings.shutdown_grace_s if grace is None else grace
        _log.info("server_stopping", grace_s=grace)
        self.readiness.drain()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        shutdown = getattr(self._health, "enter_graceful_shutdown", None)
        if shutdown is not None:
            outcome = shutdown()
            if inspect.isawaitable(outcome):
                await outcome
        try:
            await self._server.stop(grace)
        finally:
            if self._side is not None:
                await self._side.stop()
            self._terminated.set()
            _log.info("server_stopped")

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def wait_for_termination(self) -> None:
        await self._terminated.wait()

    async def serve_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop with `shutdown_grace_s`; a second signal stops at once."""
        if self._server is None:
            await self.start()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._terminated.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        _log.info("signal_received", signal=sig.name)
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self.stop(self._settings.shutdown_grace_s))
        elif self._server is not None:
            # Repeating stop with a shorter grace makes grpc cancel the calls still running.
            self._force_task = asyncio.create_task(self._server.stop(0))
