"""An asyncio face on the idempotent confluent-kafka producer: send a batch, await every acknowledgement.

librdkafka does the batching, compression and idempotent sequencing in its own threads; one thread here
serves its delivery reports and hands each batch's outcome to the event loop once, when the last report of
the batch arrives. `message.timeout.ms` is the publish timeout, so every message gets exactly one report
(acknowledged, or failed with the reason) and a batch never waits on a message librdkafka may still
deliver later. An acknowledgement without an offset counts as a failure (`delivery_failure`): librdkafka
can report a message it never got written as delivered, and the job must then be published again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from apptremind_platform.relay import delivery_failure, producer_config


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes
    headers: Sequence[tuple[str, bytes]]


class AsyncProducer:
    def __init__(self, bootstrap_servers: str, publish_timeout_s: float, **overrides: Any) -> None:
        self.publish_timeout_s = publish_timeout_s
        config = producer_config(
            bootstrap_servers,
            **{"message.timeout.ms": int(publish_timeout_s * 1000), "linger.ms": 2} | overrides,
        )
        self._producer = Producer(config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve_reports, name="scheduler-producer", daemon=True)
        self._thread.start()

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, messages: Sequence[Outgoing]) -> list[str | None]:
        """Publishes the batch; per message None when Kafka acknowledged it, else the error text."""
        if not messages:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        results: list[str | None] = [None] * len(messages)
        pending = len(messages)
        # Reports arrive on the report thread; a refused produce() is counted on this one.
        lock = threading.Lock()

        def finish(index: int, error: str | None) -> None:
            nonlocal pending
            results[index] = error
            with lock:
                pending -= 1
                last = pending == 0
            if last:
                loop.call_soon_threadsafe(_resolve, done)

        def report(index: int) -> Any:
            def on_delivery(err: KafkaError | None, message: Message) -> None:
                finish(index, delivery_failure(err, message))

            return on_delivery

        for index, m in enumerate(messages):
            while True:
                try:
                    self._producer.produce(
                        m.topic, value=m.value, key=m.key, headers=list(m.headers), on_delivery=report(index)
                    )
                    break
                except BufferError:
                    # librdkafka's queue is full: let the report thread drain acknowledged messages.
                    await asyncio.sleep(0.005)
                except Exception as exc:  # a message librdkafka refused outright (too large, ...)
                    finish(index, str(exc) or type(exc).__name__)
                    break
        # librdkafka reports every message within message.timeout.ms; the margin covers report delivery.
        await asyncio.wait_for(done, self.publish_timeout_s + 10.0)
        return results

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join()
        self._producer.flush(timeout_s)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
