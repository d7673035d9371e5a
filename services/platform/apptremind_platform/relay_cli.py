"""`apptremind-relay`: the outbox relay process of one service database, with its HTTP side port."""

from __future__ import annotations

import asyncio
import signal
import threading

from .http_side import SidePort
from .logs import configure_logging, get_logger
from .relay import OutboxRelay, RelaySettings
from .server import Readiness
from .settings import ServiceSettings

log = get_logger(__name__)


async def run(settings: ServiceSettings) -> None:
    relay = OutboxRelay(
        RelaySettings(
            service=settings.service_name,
            dsn=settings.database_url,
            bootstrap_servers=settings.kafka.bootstrap_servers,
        )
    )
    stop = threading.Event()
    readiness = Readiness()

    async def relay_healthy() -> None:
        if not relay.healthy:
            raise RuntimeError("relay cannot reach its database or Kafka")

    readiness.add("relay", relay_healthy)
    side = SidePort(settings.grpc_host, settings.http_port, readiness)
    port = await side.start()
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    worker = asyncio.create_task(asyncio.to_thread(relay.run, stop))
    log.info("relay_started", http_port=port)

    async def refresh_readiness() -> None:
        while not stopped.is_set():
            await readiness.refresh()
            await asyncio.sleep(1.0)

    refresher = asyncio.create_task(refresh_readiness())
    await stopped.wait()
    stop.set()
    await worker
    refresher.cancel()
    await side.stop()
    log.info("relay_stopped")


def main() -> None:
    settings = ServiceSettings()
    configure_logging(f"{settings.service_name}-relay", settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
