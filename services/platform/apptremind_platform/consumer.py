"""A plain (non-Faust) Kafka consumer that feeds a MessageProcessor and commits only what it finished."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from .logs import get_logger
from .metrics import CONSUMER_LAG
from .processing import Incoming, MessageProcessor

log = get_logger(__name__)


class KafkaConsumerRunner:
    """At-least-once: the offset after a message is committed only once the processor returned for it."""

    def __init__(
        self,
        processor: MessageProcessor,
        bootstrap_servers: str,
        group_id: str,
        max_records: int = 500,
        offset_reset: str = "earliest",
    ) -> None:
        self.processor = processor
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.max_records = max_records
        self.offset_reset = offset_reset
        self._consumer: AIOKafkaConsumer | None = None
        # Set once partitions are assigned and every one of them has a committed starting position.
        self.assigned = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset=self.offset_reset,
        )
        self._consumer = consumer
        consumer.subscribe(self.processor.topics, listener=_PinStart(consumer, self.assigned))
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                for tp, records in batches.items():
                    for record in records:
                        await self.processor.process(
                            Incoming(
                                topic=record.topic,
                                partition=record.partition,
                                offset=record.offset,
                                key=record.key,
                                value=record.value,
                                headers=list(record.headers or ()),
                            )
                        )
                    await consumer.commit({tp: records[-1].offset + 1})
                    self._export_lag(consumer, tp, records[-1].offset + 1)
        finally:
            self._consumer = None
            await consumer.stop()

    def _export_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition, position: int) -> None:
        end = consumer.highwater(tp)
        if end is not None:
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(max(0, end - position))


class _PinStart(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits the starting position of a partition the group has never committed.

    With `latest`, a group that joined and stopped before any message arrived would otherwise start at
    the end again next time, skipping what was produced while it was down.
    """

    def __init__(self, consumer: AIOKafkaConsumer, assigned: asyncio.Event) -> None:
        self._consumer = consumer
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._assigned.clear()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        unpinned = {
            tp: await self._consumer.position(tp)
            for tp in assigned
            if await self._consumer.committed(tp) is None
        }
        if unpinned:
            await self._consumer.commit(unpinned)
        self._assigned.set()
