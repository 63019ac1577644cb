"""A broker that goes away and comes back (issue #10).

`up` runs against a broker it did not start, as it does against a production Kafka: Tansu keeping
its records in an S3 store (``moto_server``), so that, like a Kafka, it comes back with its topics,
records and committed offsets. It is SIGKILLed mid-meeting and started again on the same port 15 s
later: longer than the presence lease, so every participant has expired by the time it is back.

With no operator action, the gateway and every worker carry on; every client is told
``unavailable`` once while the broker is gone; no client socket is dropped; and after it is back
the room, joined before the outage, hears and reads its speaker again.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import boto3
import botocore.exceptions
import psutil
import pytest

from streams.broker import EmbeddedTansu, free_port
from streams.cli.common import STAGES
from tests.conftest import running_up, socket_url, spares_warm, worker
from tests.speech import prompt_pcm, silence
from tests.test_meeting import Received, collect, stream_speech, wait_until

pytestmark = pytest.mark.integration

OUTAGE_S = 15.0
BUCKET = "tansu"
FETCH_MAX_WAIT_MS = "200"
"""On S3 storage every fetch is S3 requests: a list of the partition's record objects, which
moto_server answers by walking every object in the bucket, in Python. At the default 20 ms fetch
wait, a pipeline writing a record object per worker each second saturated it within two minutes
(0.9 of a core at 55 requests/s) and readiness, then delivery, stalled behind it. At 200 ms it used
0.2 of a core at the same age; the test asserts delivery, not latency."""


@pytest.fixture
def s3_storage(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 store on 127.0.0.1 with a bucket for the broker; the AWS_* variables the broker reads point at it."""
    port = free_port()
    store = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    settings = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in {**settings, "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + 30
    while True:
        try:
            s3.create_bucket(Bucket=BUCKET)
            break
        except botocore.exceptions.EndpointConnectionError:
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.2)
    yield f"s3://{BUCKET}/"
    store.terminate()
    store.wait()


async def test_the_system_survives_a_broker_that_goes_away_and_comes_back(s3_storage: str) -> None:
    broker = await asyncio.to_thread(EmbeddedTansu(storage=s3_storage).start)
    try:
        with running_up(
            "up-broker-faults.log",
            {
                "DRAGOMAN_KAFKA_BOOTSTRAP": broker.bootstrap,
                "DRAGOMAN_BROKER": "tansu",
                "DRAGOMAN_FETCH_MAX_WAIT_MS": FETCH_MAX_WAIT_MS,
            },
        ) as system:
            await spares_warm(system)  # loading them takes the CPU the first utterance needs
            room = f"outage-{uuid.uuid4().hex[:8]}"
            async with aiohttp.ClientSession() as http:
                speaker = await http.ws_connect(socket_url(system, "audio", room, "ana", speak="en", listen="en"))
                listener = await http.ws_connect(socket_url(system, "audio", room, "beto", speak="es", listen="es"))
                captions = await http.ws_connect(socket_url(system, "captions", room, "beto"))
                sockets = {"speaker": speaker, "listener": listener, "captions": captions}
                received = {name: Received() for name in sockets}
                tasks = [asyncio.create_task(collect(ws, received[name])) for name, ws in sockets.items()]
                await asyncio.sleep(2.0)  # the room forms

                def finals(language: str) -> list[dict[str, object]]:
                    return [c for c in received["captions"].json if c.get("is_final") and c["language"] == language]

                def audio_ends() -> list[dict[str, object]]:
                    return [m for m in received["listener"].json if m.get("type") == "audio_end"]

                def errors(name: str) -> list[object]:
                    return [m["code"] for m in received[name].json if m.get("type") == "error"]

                async def utterance(prompt: str, delivered: int) -> None:
                    await stream_speech(speaker, silence(0.5) + prompt_pcm("en", prompt) + silence(1.5))
                    await wait_until(
                        lambda: len(finals("es")) >= delivered and len(audio_ends()) >= delivered, timeout=90
                    )

                await utterance("agent-loggedoff", 1)
                workers = {stage: worker(system, stage).pid for stage in STAGES}

                psutil.Process(broker.pid).kill()
                gone_at = time.time()
                await stream_speech(speaker, silence(0.5) + prompt_pcm("en", "agent-loginok") + silence(1.5))
                await wait_until(lambda: all("unavailable" in errors(name) for name in sockets), timeout=10)
                await asyncio.sleep(OUTAGE_S - (time.time() - gone_at))
                broker.stop()  # reaps the dead process
                broker = await asyncio.to_thread(EmbeddedTansu(broker.port, s3_storage).start)
                back_at = time.time()

                async def readiness() -> dict[str, object]:
                    async with http.get(f"{system.url}/readyz") as response:
                        return dict(await response.json())

                while not (state := await readiness())["ready"]:
                    assert time.time() - back_at < 120, f"the system did not become ready again: {state}"
                    await asyncio.sleep(0.2)
                ready_s = time.time() - back_at
                before = len(finals("es"))
                await utterance("agent-loggedoff", before + 1)
                print(f"broker away {OUTAGE_S:g} s; ready {ready_s:.1f} s after it was back; "
                      f"errors to the clients {[errors(name) for name in sockets]}")  # fmt: skip
                assert all(errors(name) == ["unavailable"] for name in sockets), "told once each, and nothing else"

                assert not [name for name, ws in sockets.items() if ws.closed], "a client socket was dropped"
                assert {stage: worker(system, stage).pid for stage in STAGES} == workers, "a worker was restarted"
                for ws in sockets.values():
                    await ws.close()
                for task in tasks:
                    with contextlib.suppress(Exception):
                        await task
    finally:
        broker.stop()
