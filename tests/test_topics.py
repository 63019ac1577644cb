"""Topics on a broker nobody prepared: whatever starts first (here the gateway) creates every topic
with its partitions and config, and a topic that exists with the wrong config is found out."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestServer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka.admin import AdminClient, ConfigResource

from agents.models import describe_languages
from streams.broker import EmbeddedTansu, ensure_topics
from streams.settings import Settings
from streams.topics import ALL_TOPICS, TRANSCRIPTS
from web.app import create_app

PARTITIONS = 3


@pytest.fixture
def bare_broker() -> Iterator[str]:
    with EmbeddedTansu().start() as broker:
        yield broker.bootstrap


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


async def test_the_gateway_creates_every_topic_with_its_config(bare_broker: str) -> None:
    assert not {spec.name for spec in ALL_TOPICS} & set(described(bare_broker))
    settings = Settings(partitions=PARTITIONS, jwt_secret="s")
    server = TestServer(create_app(settings, bare_broker, "s", describe_languages(settings)))
    await server.start_server()
    try:
        topics = described(bare_broker)
    finally:
        await server.close()
    for spec in ALL_TOPICS:
        partitions, config = topics[spec.name]
        assert partitions == PARTITIONS, spec.name
        assert {key: config.get(key) for key in spec.kafka_config()} == spec.kafka_config(), spec.name
    assert topics[TRANSCRIPTS.name][1]["cleanup.policy"] == "compact"


async def test_a_topic_with_the_wrong_config_is_found_out(bare_broker: str, caplog: pytest.LogCaptureFixture) -> None:
    """As if the broker had auto-created it with its defaults. Tansu cannot alter configs, so this
    is a warning here; a real Kafka gets the config set (``alter_configs``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bare_broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TRANSCRIPTS.name, 1, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()
    with caplog.at_level(logging.WARNING, logger="streams.broker"):
        await ensure_topics(bare_broker, PARTITIONS)
    drifted = [r.getMessage() for r in caplog.records if "cannot alter" in r.getMessage()]
    assert len(drifted) == 1 and drifted[0].startswith(f"topic {TRANSCRIPTS.name} has config"), drifted
    assert set(described(bare_broker)) >= {spec.name for spec in ALL_TOPICS}
