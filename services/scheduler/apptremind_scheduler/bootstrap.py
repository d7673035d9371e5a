"""Wires the scheduler-service process: its servicer, its migrations, its consumer and its workers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from apptremind_platform import service as platform_service
from apptremind_platform.background import BackgroundTask
from apptremind_platform.processing import MessageProcessor
from apptremind_platform.settings import ServiceSettings

from . import events, worker
from .grpc import SERVICE, SchedulerServiceServicer
from .settings import SchedulerSettings
from .wakeup import Wakeup


def build_spec(
    engine_settings: SchedulerSettings | None = None, workers: bool = True, consumers: bool = True
) -> platform_service.ServiceSpec:
    """The service; tests pass their own engine settings (short leases, small batches) or leave parts out."""
    wakeup = Wakeup()

    def engine_config() -> SchedulerSettings:
        return engine_settings or SchedulerSettings()

    def servicers(pool: AsyncConnectionPool, settings: ServiceSettings) -> Sequence[tuple[object, str]]:
        return [(SchedulerServiceServicer(pool, wakeup), SERVICE)]

    def reminder_processor(pool: AsyncConnectionPool, settings: ServiceSettings) -> MessageProcessor:
        return events.reminder_processor(pool)

    def workers_task(pool: AsyncConnectionPool, settings: ServiceSettings) -> BackgroundTask:
        return worker.engine(pool, engine_config(), settings.kafka.bootstrap_servers, wakeup)

    return platform_service.ServiceSpec(
        name="scheduler",
        servicers=servicers,
        sql_dir=Path(__file__).parent / "sql",
        processors=(reminder_processor,) if consumers else (),
        background=(workers_task,) if workers else (),
    )


SPEC = build_spec()


def main() -> None:
    platform_service.main(SPEC)


if __name__ == "__main__":
    main()
