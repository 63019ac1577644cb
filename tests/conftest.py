"""Shared fixtures. The ``meeting`` fixture runs the real thing: ``dragoman up`` on a free port,
with its embedded broker, three workers and the gateway, once per test session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest

from streams.broker import free_port
from streams.cli.common import REALTIME_STAGES, STAGES, worker_port
from web.auth import mint

READY = re.compile(r"dragoman ready: (?P<url>http://[^/]+)/#token=(?P<token>\S+) broker=(?P<broker>\S+)")
ARTIFACTS = Path(__file__).parent / "artifacts"


@dataclass(frozen=True)
class Meeting:
    url: str
    ws_url: str
    broker: str
    token: str
    secret: str
    log: Path
    pid: int
    """The `dragoman up` process: its children are this system's workers and gateway."""
    worker_port: int
    """The first worker's web port (stt; then translate, tts, transcribe; then `up`'s own /metrics)."""


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports, below Linux's ephemeral range (32768+) so that no
    client socket takes one of them between this check and the workers' bind."""
    for base in random.sample(range(20_000, 32_000 - count), 200):
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


@contextlib.contextmanager
def running_up(log_name: str, settings: dict[str, str]) -> Iterator[Meeting]:
    """``dragoman up`` on free ports with ``settings`` (DRAGOMAN_* variables), until it is ready; on its
    embedded broker unless ``settings`` name one."""
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / log_name
    secret = "test-secret-" + os.urandom(16).hex()
    port, first_worker_port = free_port(), free_ports(10)  # four workers, up's own /metrics, and second replicas
    scratch = contextlib.ExitStack()
    # Everything the system writes to temporary files goes here, and goes when it stops, killed or not.
    temporary = scratch.enter_context(tempfile.TemporaryDirectory(prefix="dragoman-test-", ignore_cleanup_errors=True))
    env = {
        **{name: value for name, value in os.environ.items() if name != "DRAGOMAN_KAFKA_BOOTSTRAP"},
        "TMPDIR": temporary,
        "DRAGOMAN_PORT": str(port),
        "DRAGOMAN_WORKER_WEB_PORT": str(first_worker_port),
        "DRAGOMAN_JWT_SECRET": secret,
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    with scratch, log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "up"], env=env, stdout=subprocess.PIPE, stderr=log, text=True
        )
        assert process.stdout is not None
        deadline = time.monotonic() + 400
        match = None
        for line in process.stdout:
            log.write(line)
            if (match := READY.search(line)) or time.monotonic() > deadline:
                break
        if match is None:
            process.kill()
            pytest.fail(f"dragoman up never got ready; see {log_path}")
        url = match["url"].rstrip("/")
        ws_url = url.replace("http", "ws", 1)
        try:
            token = match["token"]
            yield Meeting(url, ws_url, match["broker"], token, secret, log_path, process.pid, first_worker_port)
        finally:  # a failed test stops its system too
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise


@pytest.fixture(scope="session")
def meeting() -> Iterator[Meeting]:
    settings = {
        "DRAGOMAN_SSE_KEEPALIVE_S": "0.5",  # so that the file transcription tests see keepalives
        "DRAGOMAN_MAX_TRANSCRIPTIONS": "1",  # so that a second concurrent upload is answered busy
        # A killed worker is restarted, reloads its models and rejoins its group within this:
        # what it replays is then not stale (test_guarantees kills one mid-utterance).
        "DRAGOMAN_STALE_AFTER_S": "40",
        # Tests open many short-lived speakers in quick succession; admission is tested in test_capacity.
        "DRAGOMAN_MAX_SPEAKERS": "100",
    }
    with running_up("up.log", settings) as system:
        yield system


@pytest.fixture(scope="session")
def production() -> Iterator[Meeting]:
    """`dragoman up` with every default, as an operator runs it (the stale budget above all)."""
    with running_up("up-production.log", {}) as system:
        yield system


def dragoman(system: Meeting, *args: str) -> subprocess.CompletedProcess[str]:
    """``dragoman <args>`` against ``system``'s broker; it must succeed."""
    env = {**os.environ, "DRAGOMAN_KAFKA_BOOTSTRAP": system.broker}
    done = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


async def spares_warm(system: Meeting, timeout_s: float = 120) -> None:
    """Wait until every live stage of ``system`` has a warm spare (``dragoman_spare_warm`` on up's
    /metrics): a worker killed before its spare is warm is replaced at the speed of a cold start."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"http://127.0.0.1:{system.worker_port + len(STAGES)}/metrics") as response:
                warm = re.findall(r'^dragoman_spare_warm\{process="(\w+)"\} 1\.0$', await response.text(), re.M)
            if set(warm) >= set(REALTIME_STAGES):
                return
            assert time.monotonic() < deadline, f"spares warm after {timeout_s} s: {warm}"
            await asyncio.sleep(0.5)


def worker(system: Meeting, stage: str, replica: int = 0) -> psutil.Process:
    """``system``'s live worker of ``stage`` (``replica``): the child of its `dragoman up` serving that
    worker's port (a warm spare, which has the same command line, serves nothing until it takes over)."""
    port = worker_port(system.worker_port, stage, replica)
    for process in psutil.Process(system.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in process.net_connections("tcp")):
                return process
    raise LookupError(f"no {stage} worker")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        yield session


def socket_url(meeting: Meeting, endpoint: str, room: str, user: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"token": mint(meeting.secret, room, user), **query}.items())
    return f"{meeting.ws_url}/ws/{endpoint}/{room}?{params}"
