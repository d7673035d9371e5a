"""The Faust app of the reminder pipeline (`faust -A apptremind_streams.app worker`, or apptremind-streams).

Agents, each on a raw topic through a MessageProcessor (inbox dedupe, retries with backoff, DLQ; at-least-
once, never Faust's exactly_once, ADR 0005):
- scheduler.reminder.due.v1 -> dispatch the reminder (notification's dispatch pipeline)
- booking.appointment.booked.v1 / rescheduled.v1 -> the confirmation e-mail with invite.ics
- notification.sent.v1 / failed.v1 -> per-business, per-day delivery counters (the dashboard's read model)
"""

from __future__ import annotations

import logging
from typing import Any, cast

import faust

from apptremind_notification import consumers
from apptremind_platform.faust_support import incoming, raw_topic

from .batching import process_all, process_by_key
from .pipeline import Shared
from .settings import StreamsSettings

settings = StreamsSettings()
shared = Shared(settings)


class QuietWorker(faust.Worker):
    """Faust's worker without its terminal progress spinner. At log level warning and above Faust keeps the
    spinner and sets the root logger to DEBUG so that it spins on every record; every debug call in aiokafka
    and mode then builds a LogRecord (measured: about 3% of the worker's CPU under load)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


app = faust.App(
    settings.streams_app_id,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")],
    datadir=str(settings.streams_data_dir),
    web_enabled=False,
    consumer_auto_offset_reset=settings.streams_offset_reset,
    # Topics are created from the platform's registry (apptremind_streams.worker), never by Faust.
    topic_allow_declare=False,
    topic_disable_leader=True,
    Worker=QuietWorker,
)

due_topic = raw_topic(app, consumers.DUE_TOPIC)
booking_topic = raw_topic(app, consumers.BOOKED_TOPIC, consumers.RESCHEDULED_TOPIC)
status_topic = raw_topic(app, *sorted(consumers.status_topics()))


@app.agent(due_topic)
async def dispatch_reminders(stream: Any) -> None:
    pipeline = await shared.get()
    async for batch in stream.take_events(settings.streams_batch_size, within=settings.streams_batch_wait_s):
        await process_by_key(pipeline.dispatch, batch)


@app.agent(booking_topic)
async def send_confirmations(stream: Any) -> None:
    pipeline = await shared.get()
    async for event in stream.events():
        await pipeline.confirmations.process(incoming(event))


@app.agent(status_topic)
async def count_statuses(stream: Any) -> None:
    pipeline = await shared.get()
    async for batch in stream.take_events(settings.streams_batch_size, within=settings.streams_batch_wait_s):
        await process_all(pipeline.status, batch)


async def _close(sender: Any, *_: Any, **__: Any) -> None:
    await shared.close()


# mode's signal typing expects a positional-only sender; the receiver is fine at runtime.
app.on_before_shutdown.connect(cast(Any, _close))
