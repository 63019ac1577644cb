"""Consumer lag per group and partition, as Kafka's own tools compute it: a group's committed
offset against the partition's end, in messages, and in seconds (how long ago the oldest message
the group has not committed was appended).

On the embedded broker the end offsets are reported up to a batch early (DESIGN.md, measured
limits), so a lag of a few messages can read as 0 there; real Kafka reports them exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams import metrics
from streams.broker import topic_partitions
from streams.topics import STAGE_SOURCES

log = logging.getLogger(__name__)

GROUPS = {f"dragoman-{stage}": spec.name for stage, spec in STAGE_SOURCES.items()}
"""Each stage's consumer group and the topic it consumes."""


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    seconds: float
    """0 when nothing is waiting."""

    @property
    def messages(self) -> int:
        return max(0, self.end - self.committed)


@contextlib.asynccontextmanager
async def _running(consumer: AIOKafkaConsumer) -> AsyncIterator[AIOKafkaConsumer]:
    """``consumer`` started, and stopped after, also when it could not start (the broker is away)."""
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


async def measure(bootstrap: str, groups: dict[str, str] = GROUPS) -> list[PartitionLag]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    async with _running(reader):
        lags = []
        existing = await topic_partitions(bootstrap, list(groups.values()))
        for group, topic in groups.items():
            partitions = [TopicPartition(topic, p) for p in existing.get(topic, ())]
            committed = await _committed(bootstrap, group, partitions)
            ends = await reader.end_offsets(list(committed))
            for tp, offset in committed.items():
                waiting_since = await _appended_at(reader, tp, offset) if ends[tp] > offset else None
                seconds = 0.0 if waiting_since is None else max(0.0, time.time() - waiting_since)
                lags.append(PartitionLag(group, topic, tp.partition, offset, ends[tp], seconds))
        return lags


async def _committed(bootstrap: str, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The group's committed offsets (partitions it never committed are left out). A consumer that
    names the group but subscribes to nothing only asks its coordinator: it never joins the group."""
    asker = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    async with _running(asker):
        offsets = {tp: await asker.committed(tp) for tp in partitions}
    return {tp: offset for tp, offset in offsets.items() if offset is not None and offset >= 0}


async def _appended_at(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> float | None:
    """When the message at ``offset`` was appended (None if it cannot be read now)."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
    messages = batch.get(tp, [])
    return messages[0].timestamp / 1000 if messages else None


async def export(bootstrap: str) -> None:
    """Measure once and set ``dragoman_consumer_lag_messages`` and ``_seconds``."""
    for lag in await measure(bootstrap):
        labels = (lag.group, lag.topic, str(lag.partition))
        metrics.CONSUMER_LAG_MESSAGES.labels(*labels).set(lag.messages)
        metrics.CONSUMER_LAG_SECONDS.labels(*labels).set(lag.seconds)


async def export_forever(bootstrap: str, every_s: float) -> None:
    """:func:`export` every ``every_s``; a broker that cannot be asked now is asked again next time."""
    while True:
        try:
            await export(bootstrap)
        except (KafkaError, OSError) as exc:
            log.warning("consumer lag not measured: %r", exc)
        await asyncio.sleep(every_s)
