"""Many events at once without giving up at-least-once: a batch from `stream.take_events` is handled
concurrently, and Faust acknowledges the batch only after every event in it has been handled (processed, a
duplicate, or dead-lettered). Running them concurrently is also what lets their transactions share commits
(the pipeline's GroupCommit).

`process_by_key` keeps one chain per Kafka key: events of one key (one appointment) stay in order and never
run side by side, so two copies of a message cannot both reach the provider. `process_all` hands the whole
batch to the processor's `process_many`, for handlers whose effects commute (counters) and whose inbox claim
alone dedupes: one inbox statement and one transaction for the batch.

Agent-level `concurrency=` is not used: Faust then acknowledges events out of order and has committed past
an unhandled one (faust-streaming #312).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from apptremind_platform.faust_support import incoming
from apptremind_platform.processing import MessageProcessor


async def process_by_key(processor: MessageProcessor, events: Sequence[Any]) -> None:
    chains: dict[bytes | None, list[Any]] = defaultdict(list)
    for event in events:
        chains[event.message.key].append(event)

    async def run(chain: list[Any]) -> None:
        for event in chain:
            await processor.process(incoming(event))

    await asyncio.gather(*(run(chain) for chain in chains.values()))


async def process_all(processor: MessageProcessor, events: Sequence[Any]) -> None:
    await processor.process_many([incoming(event) for event in events])
