"""Operators use Kafka's own tools on Dragoman's topics and groups, and they agree with Dragoman.

On one embedded Apache Kafka broker: ``kafka-consumer-groups --describe`` against the consumer lag
Dragoman exports, ``kafka-consumer-groups --reset-offsets --to-datetime`` (the README's replay by
time), and the log cleaner on the compacted topics."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from streams import lag
from streams.broker import EmbeddedKafka, ensure_topics
from streams.topics import DLQ, STAGE_SOURCES, TRANSCRIPTS
from tests.kafka_cluster import kafka_tool

GROUPS_TOOL = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
PARTITIONS = 2


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    with EmbeddedKafka().start() as broker:
        yield broker.bootstrap


@pytest.fixture
async def topics(kafka: str) -> AsyncIterator[str]:
    await ensure_topics(kafka, PARTITIONS)
    yield kafka


Record = tuple[int, bytes | None, bytes | None, int | None]
"""(partition, key, value, timestamp in ms or None for now)."""


async def produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, key, value, timestamp_ms in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition, timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` as its stage would, without joining it (so the group stays empty)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))  # assigned by hand: it commits as the group without joining it
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
    finally:
        await consumer.stop()


def describe_groups(bootstrap: str, *groups: str) -> dict[tuple[str, str, int], tuple[int, int, int]]:
    """``kafka-consumer-groups --describe``: (group, topic, partition) → (current offset, log end, lag)."""
    names = [arg for group in groups for arg in ("--group", group)]
    table = kafka_tool(bootstrap, GROUPS_TOOL, "--describe", *names)
    rows = {}
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0] in groups and fields[3].isdigit():
            rows[(fields[0], fields[1], int(fields[2]))] = (int(fields[3]), int(fields[4]), int(fields[5]))
    return rows


def exported_lag(group: str, topic: str, partition: int) -> float | None:
    labels = {"group": group, "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value("dragoman_consumer_lag_messages", labels)


async def test_kafka_consumer_groups_shows_each_stages_lag_as_dragoman_exports_it(topics: str) -> None:
    """Each stage's group with a different backlog on each partition: Kafka's tool and Dragoman's
    ``dragoman_consumer_lag_messages`` name the same groups and count the same messages."""
    expected = {}
    for index, (stage, spec) in enumerate(sorted(STAGE_SOURCES.items())):
        sent = {0: 3 + index, 1: 5 + 2 * index}
        before = {p: await _end(topics, TopicPartition(spec.name, p)) for p in sent}
        committed = {0: before[0] + index, 1: before[1] + sent[1]}  # partition 1 all caught up
        # Appended an hour ago, as if the stage had stopped then (and before the next test's records).
        long_ago = int(time.time() * 1000) - 7_200_000
        await produce(topics, spec.name, [(p, b"room", b"x", long_ago) for p, n in sent.items() for _ in range(n)])
        await commit(topics, f"dragoman-{stage}", {TopicPartition(spec.name, p): c for p, c in committed.items()})
        for p, n in sent.items():
            expected[(f"dragoman-{stage}", spec.name, p)] = (committed[p], before[p] + n, before[p] + n - committed[p])
    await lag.export(topics)
    described = describe_groups(topics, *lag.GROUPS)
    assert described == expected
    for (group, topic, partition), (_, _, behind) in described.items():
        assert exported_lag(group, topic, partition) == behind, (group, topic, partition)


async def test_resetting_a_groups_offsets_to_a_time_rewinds_it_to_the_first_record_since(topics: str) -> None:
    """The README's replay by time: with the stage's workers stopped, ``--reset-offsets --to-datetime``
    moves its group to the first record appended at or after that time, on every partition."""
    group, topic = "dragoman-translate", STAGE_SOURCES["translate"].name
    base = int(time.time() * 1000) - 3_600_000
    minutes = [base + 60_000 * m for m in range(6)]
    await produce(topics, topic, [(p, b"room", b"final", t) for p in range(PARTITIONS) for t in minutes])
    ends = {TopicPartition(topic, p): await _end(topics, TopicPartition(topic, p)) for p in range(PARTITIONS)}
    await commit(topics, group, ends)  # the stage had read everything
    since = datetime.datetime.fromtimestamp(minutes[2] / 1000, datetime.UTC)
    kafka_tool(topics, GROUPS_TOOL, "--reset-offsets", "--group", group, "--topic", topic,
               "--to-datetime", since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "--execute")  # fmt: skip
    rewound = {(row.topic, row.partition): row.committed for row in await lag.measure(topics, {group: topic})}
    assert rewound == {(topic, p): ends[TopicPartition(topic, p)] - 4 for p in range(PARTITIONS)}


async def _end(bootstrap: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def test_kafka_compacts_transcripts_and_dead_letters_to_each_keys_last_record(topics: str) -> None:
    """Kafka's log cleaner, for real: superseded updates of a file's transcript and a dead letter's
    earlier state leave the log. Segments roll after ``segment.ms`` (an hour for these topics, see
    streams.topics); here after a moment, so that the cleaner need not wait for the hour."""
    admin = AIOKafkaAdminClient(bootstrap_servers=topics)
    await admin.start()
    try:
        for spec in (TRANSCRIPTS, DLQ):
            quick = {**spec.kafka_config(), "segment.ms": "200", "min.cleanable.dirty.ratio": "0.01"}
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, quick)])
    finally:
        await admin.close()
    for spec in (TRANSCRIPTS, DLQ):
        await produce(topics, spec.name, [(0, b"file-a", f"update {n}".encode(), None) for n in range(5)])
        await produce(topics, spec.name, [(0, b"file-b", b"only", None)])
    deadline = time.monotonic() + 90  # the cleaner looks every 15 s (log.cleaner.backoff.ms)
    while True:
        await asyncio.sleep(1.0)
        # A record appended now rolls the segment holding the ones above, which the cleaner can then clean.
        kept = {}
        for spec in (TRANSCRIPTS, DLQ):
            await produce(topics, spec.name, [(0, b"roll", b"x", None)])
            records = await _read_partition(topics, TopicPartition(spec.name, 0))
            kept[spec.name] = [record for record in records if record[0] != b"roll"]
        if all(len(records) == 2 for records in kept.values()) or time.monotonic() > deadline:
            break
    for spec in (TRANSCRIPTS, DLQ):
        assert kept[spec.name] == [(b"file-a", b"update 4"), (b"file-b", b"only")], spec.name


async def _read_partition(bootstrap: str, tp: TopicPartition) -> list[tuple[bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        records = []
        while (await consumer.position(tp)) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            records += [(m.key, m.value) for m in batch.get(tp, [])]
        return records
    finally:
        await consumer.stop()
