"""The small HTTP side port every process exposes: liveness, readiness and Prometheus metrics.

`/healthz` answers 200 while the event loop runs (a wedged loop fails it, which is the point); `/readyz`
runs the readiness checks and answers 503 with the failing names so an orchestrator stops routing traffic
here; `/metrics` is the default Prometheus registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from .server import Readiness


class SidePort:
    def __init__(self, host: str, port: int, readiness: Readiness) -> None:
        self._host = host
        self._port = port
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self.port = 0

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> int:
        """Listen and return the bound port (the real one when asked for port 0)."""
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = await self._readiness.refresh()
        ready = self._readiness.ready
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        # Negotiated like prometheus_client's own server: OpenMetrics when the scraper asks for it. The content
        # type carries parameters (version, charset), which aiohttp's content_type= argument refuses.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})
