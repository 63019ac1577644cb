"""Overload is an explicit answer: readiness, admission, fair share, and dropped speech announced.

A second ``dragoman up`` runs with its capacity made small: one speaker, and a
stale budget (50 ms) that every utterance overruns, so every recognition is
dropped and must be announced. The figures (how many rooms this machine holds)
belong to ``dragoman bench load``, not here.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from streams.broker import free_port
from tests.conftest import ARTIFACTS, Meeting, running_up, socket_url
from tests.speech import prompt_pcm, silence

pytestmark = pytest.mark.integration
FRAME = 3_200


@pytest.fixture(scope="module")
def small() -> Iterator[Meeting]:
    settings = {"DRAGOMAN_MAX_SPEAKERS": "1", "DRAGOMAN_STALE_AFTER_S": "0.05", "DRAGOMAN_COMMANDS_PER_S": "5"}
    with running_up("up-small.log", settings) as system:
        yield system


async def stream(ws: aiohttp.ClientWebSocketResponse, pcm: bytes) -> None:
    """Real time, as a microphone: 100 ms frames, 100 ms apart."""
    for start in range(0, len(pcm), FRAME):
        await ws.send_bytes(pcm[start : start + FRAME])
        await asyncio.sleep(0.1)


async def first(ws: aiohttp.ClientWebSocketResponse, predicate: object, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = await ws.receive(timeout=left)
        if message.type == aiohttp.WSMsgType.TEXT and predicate(event := json.loads(message.data)):  # type: ignore[operator]
            return event  # type: ignore[no-any-return]
    raise TimeoutError


async def test_stale_speech_is_announced_and_a_speaker_past_capacity_is_refused(
    small: Meeting, http: aiohttp.ClientSession
) -> None:
    room = "small-room"
    speaker = await http.ws_connect(socket_url(small, "audio", room, "ana", speak="en", listen="en"))
    listener = await http.ws_connect(socket_url(small, "audio", room, "bo", speak="es", listen="es"))
    captions = await http.ws_connect(socket_url(small, "captions", room, "viewer"))
    await speaker.receive_json()
    await listener.receive_json()
    talking = asyncio.create_task(stream(speaker, silence(0.5) + prompt_pcm("en", "agent-alreadyon") + silence(1.5)))

    await asyncio.sleep(3.0)  # ana streams: the speech stage reports one active speaker, its capacity
    latecomer = await http.ws_connect(socket_url(small, "audio", room, "cy", speak="en", listen="en"))
    await latecomer.receive_json()
    await latecomer.send_bytes(silence(0.1))
    refusal = await first(latecomer, lambda e: e.get("type") == "error")
    assert refusal["code"] == "overloaded", refusal

    def dropped(event: dict[str, object]) -> bool:
        return event.get("type") == "utterance_dropped"

    await talking
    told_speaker, told_listener = await first(speaker, dropped), await first(listener, dropped)
    assert told_speaker == told_listener
    assert told_speaker["reason"] == "stale" and told_speaker["language"] == "en"
    viewer = await first(captions, lambda e: e.get("event") == "dropped")
    assert viewer["utterance_id"] == told_speaker["utterance_id"]
    for ws in (speaker, listener, captions, latecomer):
        await ws.close()

    async with http.get(f"{small.url}/metrics") as response:
        metrics = await response.text()
    assert 'dragoman_admissions_total{result="refused"} 1.0' in metrics


async def test_audio_faster_than_real_time_and_command_floods_are_refused(
    small: Meeting, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(socket_url(small, "audio", "flood-room", "dee", speak="en", listen="en"))
    await ws.receive_json()
    for _ in range(10):  # 10 s of audio at once: 2 s of burst pass, then refusals
        await ws.send_bytes(silence(1.0)[:-2])
    refusal = await first(ws, lambda e: e.get("type") == "error" and e.get("code") == "rate_limited")
    assert "real time" in str(refusal["message"])
    for _ in range(20):
        await ws.send_str(json.dumps({"type": "ping"}))
    pongs = 0
    with pytest.raises(TimeoutError):
        while True:
            event = await first(ws, lambda e: e.get("type") in {"pong", "error"}, timeout=1.5)
            pongs += event["type"] == "pong"
            if event["type"] == "error":
                assert event["code"] == "rate_limited" and "commands" in str(event["message"])
    assert 1 <= pongs < 20
    await ws.close()


def test_readiness_waits_for_every_stage_while_health_only_says_up(tmp_path: Path) -> None:
    """A gateway on a broker with no workers is up (healthz 200) and not ready (readyz 503, per stage)."""
    import urllib.error
    import urllib.request

    port = free_port()
    # The broker is killed at the end: its log directory goes with pytest's temporary directory.
    env = {**os.environ, "DRAGOMAN_PORT": str(port), "DRAGOMAN_JWT_SECRET": "s", "PYTHONUNBUFFERED": "1",
           "TMPDIR": str(tmp_path)}  # fmt: skip
    with (ARTIFACTS / "bare-gateway.log").open("w") as log:
        broker = subprocess.Popen([sys.executable, "-m", "streams.cli", "broker"], env=env, stdout=subprocess.PIPE,
                                  stderr=log, text=True)  # fmt: skip
        try:
            assert broker.stdout is not None
            bootstrap = broker.stdout.readline().split()[-1]
            gateway = subprocess.Popen([sys.executable, "-m", "streams.cli", "gateway"], stderr=log,
                                       env={**env, "DRAGOMAN_KAFKA_BOOTSTRAP": bootstrap})  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as health:
                            assert health.status == 200
                            break
                    except (OSError, urllib.error.HTTPError):
                        assert time.monotonic() < deadline, "the gateway never came up"
                        time.sleep(0.3)
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
                assert refused.value.code == 503
                body = json.loads(refused.value.read())
                assert body["stages"] == {"stt": False, "translate": False, "tts": False, "transcribe": False}
            finally:
                gateway.kill()
        finally:
            broker.kill()


async def test_a_running_system_is_ready(small: Meeting, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{small.url}/readyz") as response:
        assert response.status == 200
        body = await response.json()
    assert all(body["stages"].values()) and body["egress"]
