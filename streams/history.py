"""Reading the log back, for replays and dead letters: Kafka's own primitives, no second store.

A read assigns partitions by hand (no consumer group, nothing committed, no rebalance to wait
for), starts at the offset of a time (``offsets_for_times``) or at the beginning, and stops at the
end of the log as it was when the read began. Reading by key assigns only the partition the key
hashes to, with the same partitioner every producer here uses (aiokafka's, murmur2 as in Kafka's
Java client).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from pydantic import BaseModel

from schemas import decode, encode
from streams.broker import topic_partitions
from streams.topics import TopicSpec

RecordT = TypeVar("RecordT", bound=BaseModel)

IDLE_END_S = 10.0
"""A read that gets nothing for this long before the end offsets it took fails (the broker is away).
Tansu reports a partition's end up to a batch early (DESIGN.md, measured limits); the batch that holds
the reported end is read whole, so its records past it come too."""


@dataclass(frozen=True)
class Logged(Generic[RecordT]):
    """One record as the log holds it: where it is, when the broker took it, and its headers."""

    record: RecordT
    partition: int
    offset: int
    timestamp: float
    """Broker append time, Unix seconds."""
    headers: dict[str, bytes] = field(default_factory=dict)


def partition_for(key: str, partitions: int) -> int:
    """The partition a producer here sends ``key`` to."""
    everything = list(range(partitions))
    return int(DefaultPartitioner()(key.encode(), everything, everything))


async def read(
    bootstrap: str,
    spec: TopicSpec,
    model: type[RecordT],
    *,
    key: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> AsyncIterator[Logged[RecordT]]:
    """The records of ``spec`` (only ``key``'s, when given) appended between ``since`` and ``until``,
    as ``model`` (the topic's record type)."""
    if model is not spec.record:
        raise TypeError(f"{spec.name} holds {spec.record.__name__}, not {model.__name__}")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        partitions = (await topic_partitions(bootstrap, [spec.name])).get(spec.name, [])
        if not partitions:
            raise LookupError(f"topic {spec.name} does not exist on {bootstrap}")
        if key is not None:
            partitions = [partition_for(key, len(partitions))]
        assigned = [TopicPartition(spec.name, p) for p in partitions]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        await _seek(consumer, assigned, since)
        # Read to the end offsets taken before reading: a partition is done once its record before the end
        # was read (or it has none after where reading started). Kafka's fetcher may hold back a partition's
        # first records for a while; asking the consumer's position then said "done" too early.
        starts = {tp: await consumer.position(tp) for tp in assigned}
        open_partitions = {tp for tp in assigned if ends[tp] > starts[tp]}
        idle_since = time.monotonic()
        while open_partitions:
            batches = await consumer.getmany(*open_partitions, timeout_ms=200)
            if not any(batches.values()):
                if time.monotonic() - idle_since > IDLE_END_S:
                    raise TimeoutError(f"{spec.name}: nothing read for {IDLE_END_S:g} s before its end")
                continue
            idle_since = time.monotonic()
            for tp, messages in batches.items():
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    open_partitions.discard(tp)
                for message in messages:
                    timestamp = message.timestamp / 1000
                    if until is not None and timestamp > until:
                        open_partitions.discard(tp)
                        break
                    if key is not None and message.key != key.encode():
                        continue  # another room on the same partition
                    try:
                        record = decode(model, message.value or b"")
                    except ValueError:
                        continue  # not a record: the stage that consumes it has dead-lettered it
                    headers = {name: value for name, value in message.headers}
                    yield Logged(record, tp.partition, message.offset, timestamp, headers)
    finally:
        await consumer.stop()


async def seek_to_start(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
    """Each partition's position at its first record, set before the next fetch. aiokafka's
    ``seek_to_beginning`` races the reset that ``assign`` starts (to the end, by default): on Kafka the
    position came back at the end in about half the reads, which then read nothing."""
    for tp, offset in (await consumer.beginning_offsets(partitions)).items():
        consumer.seek(tp, offset)


async def _seek(consumer: AIOKafkaConsumer, assigned: list[TopicPartition], since: float | None) -> None:
    if since is None:
        await seek_to_start(consumer, assigned)
        return
    found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in assigned})
    ends = await consumer.end_offsets(assigned)
    for tp in assigned:
        at = found.get(tp)
        # No record at or after ``since``: Kafka answers None, Tansu offset 0 with timestamp -1.
        consumer.seek(tp, ends[tp] if at is None or at.timestamp < 0 else at.offset)


async def append(
    bootstrap: str, writes: Sequence[tuple[str, str, BaseModel | bytes, dict[str, bytes]]]
) -> list[tuple[int, int]]:
    """Send ``(topic, key, record, headers)`` in order and wait for each; their (partition, offset).
    A record given as bytes is sent as it is (a re-driven message)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        placed = []
        for topic, key, record, headers in writes:
            value = record if isinstance(record, bytes) else encode(record)
            sent = await producer.send_and_wait(topic, key=key.encode(), value=value, headers=list(headers.items()))
            placed.append((sent.partition, sent.offset))
        return placed
    finally:
        await producer.stop()
