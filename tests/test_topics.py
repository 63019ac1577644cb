"""Topics on a broker nobody prepared, Apache Kafka and Tansu: whatever starts first (here the gateway)
creates every topic with its partitions and config, and a topic that exists with the wrong config is
put right (Kafka) or found out (Tansu, which cannot alter configs)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestServer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka.admin import AdminClient, ConfigResource

from agents.models import describe_languages
from streams.broker import EmbeddedKafka, EmbeddedTansu, ensure_topics
from streams.settings import Settings
from streams.topics import ALL_TOPICS, TRANSCRIPTS
from web.app import create_app

PARTITIONS = 3


@pytest.fixture(params=["kafka", "tansu"])
def bare_broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(which broker, its bootstrap)."""
    with (EmbeddedKafka() if request.param == "kafka" else EmbeddedTansu()).start() as broker:
        yield request.param, broker.bootstrap


def described(bootstrap: str) -> dict[str, tuple[int, dict[str, str]]]:
    """Each topic's partition count and config, as librdkafka (not our client) sees them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=10).topics
    resources = [ConfigResource("topic", name) for name in topics]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()} if resources else {}
    return {
        name: (len(meta.partitions), {key: entry.value for key, entry in configs[name].items()})
        for name, meta in topics.items()
    }


async def test_the_gateway_creates_every_topic_with_its_config(bare_broker: tuple[str, str]) -> None:
    engine, bootstrap = bare_broker
    assert not {spec.name for spec in ALL_TOPICS} & set(described(bootstrap))
    settings = Settings(partitions=PARTITIONS, jwt_secret="s", broker=engine)
    server = TestServer(create_app(settings, bootstrap, "s", describe_languages(settings)))
    await server.start_server()
    try:
        topics = described(bootstrap)
    finally:
        await server.close()
    for spec in ALL_TOPICS:
        partitions, config = topics[spec.name]
        assert partitions == PARTITIONS, spec.name
        assert {key: config.get(key) for key in spec.kafka_config()} == spec.kafka_config(), spec.name
    assert topics[TRANSCRIPTS.name][1]["cleanup.policy"] == "compact"


async def test_a_topic_with_the_wrong_config_is_put_right_or_found_out(
    bare_broker: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """As if the broker had auto-created it with its defaults: Kafka gets the config set
    (``alter_configs``); Tansu cannot alter configs, so there it is a warning."""
    engine, bootstrap = bare_broker
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TRANSCRIPTS.name, 1, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()
    with caplog.at_level(logging.WARNING, logger="streams.broker"):
        await ensure_topics(bootstrap, PARTITIONS)
    drifted = [r.getMessage() for r in caplog.records if "cannot alter" in r.getMessage()]
    topics = described(bootstrap)
    assert set(topics) >= {spec.name for spec in ALL_TOPICS}
    if engine == "kafka":
        assert drifted == [] and topics[TRANSCRIPTS.name][1]["cleanup.policy"] == "compact"
    else:
        assert len(drifted) == 1 and drifted[0].startswith(f"topic {TRANSCRIPTS.name} has config"), drifted
