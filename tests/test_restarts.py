"""A worker killed mid-meeting, with `up`'s defaults (issue #10).

Two speakers share a room, so their audio shares a partition: one speaker's utterance is held
open (unacknowledged) while the other's messages are acknowledged around it. The speech worker is
SIGKILLed in the middle of the long utterance. Its warm spare takes over within the stale budget,
so both speakers' utterances must arrive whole, each exactly once. Where the commit goes is
checked exactly in tests/test_commits.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import aiohttp
import psutil
import pytest

from tests.conftest import Meeting, running_up, spares_warm, worker
from tests.speech import prompt_pcm, prompt_transcripts, silence, word_error_rate
from web.auth import mint

pytestmark = pytest.mark.integration

FRAME = 3_200


async def test_two_speakers_in_one_partition_lose_nothing_when_stt_is_killed(production: Meeting) -> None:
    room = f"restart-{uuid.uuid4().hex[:8]}"
    await spares_warm(production)
    long_speech = prompt_pcm("en", "agent-alreadyon")  # 5.5 s, said without a pause
    short_speech = silence(0.4) + prompt_pcm("en", "agent-loggedoff") + silence(1.2)  # 3.1 s a turn

    def url(endpoint: str, user: str, query: str = "") -> str:
        return f"{production.ws_url}/ws/{endpoint}/{room}?token={mint(production.secret, room, user)}{query}"

    async with aiohttp.ClientSession() as http:
        captions = await http.ws_connect(url("captions", "viewer"))
        ana = await http.ws_connect(url("audio", "ana", "&speak=en&listen=en"))
        ben = await http.ws_connect(url("audio", "ben", "&speak=en&listen=en"))
        await ana.receive_json()
        await ben.receive_json()

        async def stream(ws: aiohttp.ClientWebSocketResponse, pcm: bytes) -> None:
            for start in range(0, len(pcm), FRAME):
                await ws.send_bytes(pcm[start : start + FRAME])
                await asyncio.sleep(0.1)

        half = len(long_speech) // 2 // FRAME * FRAME
        victim = worker(production, "stt")

        async def ana_speaks() -> None:
            await stream(ana, silence(0.5) + long_speech[:half])
            victim.kill()  # SIGKILL mid-utterance: no clean shutdown, no last commit
            await stream(ana, long_speech[half:] + silence(1.5))

        await asyncio.gather(ana_speaks(), stream(ben, short_speech * 3))
        outcome: dict[str, list[dict[str, object]]] = {"ana": [], "ben": []}

        async def collect() -> None:
            while len(outcome["ana"]) < 1 or len(outcome["ben"]) < 3:
                await collect_one()

        async def collect_more() -> None:
            while True:
                await collect_one()

        async def collect_one() -> None:
            event = await captions.receive_json()
            if event.get("event") == "dropped" or (event.get("event") == "caption" and event["is_final"]):
                outcome[str(event["speaker_id"])].append(event)

        try:
            await asyncio.wait_for(collect(), timeout=120)
            with contextlib.suppress(TimeoutError):  # anything delivered twice would come now
                await asyncio.wait_for(collect_more(), timeout=5)
        finally:
            await ana.close()
            await ben.close()
            await captions.close()
    assert worker(production, "stt").pid != victim.pid, "the speech worker was not restarted"
    print({speaker: [(e["event"], e.get("text") or e.get("reason")) for e in events]
           for speaker, events in outcome.items()})  # fmt: skip
    assert [e["event"] for e in outcome["ana"]] == ["caption"] and len(outcome["ben"]) == 3, outcome
    assert all(e["event"] == "caption" for e in outcome["ben"]), outcome
    assert len({e["utterance_id"] for e in outcome["ben"]}) == 3  # each exactly once
    said = prompt_transcripts("en")["agent-alreadyon"]  # whole: the spare replayed the held audio
    assert word_error_rate([said], [str(outcome["ana"][0]["text"])]) <= 0.25, outcome["ana"]


async def test_a_restarted_translate_worker_still_knows_who_listens(production: Meeting) -> None:
    """The room forms, the translate worker is SIGKILLed, and only then does anyone speak: the
    restarted worker must rebuild the room's listeners from its table's changelog to translate."""
    room = f"rebuild-{uuid.uuid4().hex[:8]}"
    await spares_warm(production)

    def url(endpoint: str, user: str, query: str = "") -> str:
        return f"{production.ws_url}/ws/{endpoint}/{room}?token={mint(production.secret, room, user)}{query}"

    async with aiohttp.ClientSession() as http:
        listener = await http.ws_connect(url("captions", "ana", "&language=es"))
        speaker = await http.ws_connect(url("audio", "ben", "&speak=en&listen=en"))
        await speaker.receive_json()
        await asyncio.sleep(2.0)  # the join reaches the translate worker's table (and its changelog)
        victim = worker(production, "translate")
        victim.kill()
        await asyncio.sleep(4.0)  # the dead worker's last load reports go stale (web.admission.FRESH_S)
        while not await _ready(http, production):  # restarted, models warm, partitions owned again
            await asyncio.sleep(0.5)
        assert worker(production, "translate").pid != victim.pid
        spanish = await say_and_await_final(speaker, listener, "es")
        await speaker.close()
        await listener.close()
    assert spanish["source_language"] == "en" and spanish["text"]


async def say_and_await_final(
    speaker: aiohttp.ClientWebSocketResponse, captions: aiohttp.ClientWebSocketResponse, language: str
) -> dict[str, object]:
    """The speaker says one short English prompt in real time; the first final in ``language`` comes back."""
    speech = silence(0.5) + prompt_pcm("en", "agent-loggedoff") + silence(1.5)
    for start in range(0, len(speech), FRAME):
        await speaker.send_bytes(speech[start : start + FRAME])
        await asyncio.sleep(0.1)
    while True:
        event = await captions.receive_json(timeout=60)
        if event.get("event") == "caption" and event["is_final"] and event["language"] == language:
            return dict(event)


async def _ready(http: aiohttp.ClientSession, system: Meeting) -> bool:
    async with http.get(f"{system.url}/readyz") as response:
        return response.status == 200


async def test_up_starts_everything_again_when_its_embedded_broker_dies() -> None:
    """Everything the broker held is gone (it keeps it in memory), but the meeting service comes back
    on the same addresses, with the same secret, by itself."""
    with running_up("up-broker-death.log", {}) as system:
        [broker] = [
            p
            for p in psutil.Process(system.pid).children(recursive=True)
            if any(m in " ".join(p.cmdline()) for m in ("tansu", "kafka.Kafka"))
        ]
        broker.kill()
        async with aiohttp.ClientSession() as http:
            while await _answers_ready(http, system):  # until up has noticed and stopped everything
                await asyncio.sleep(0.2)
            deadline = time.monotonic() + 240
            while not await _answers_ready(http, system):
                assert time.monotonic() < deadline, "up did not come back"
                await asyncio.sleep(1.0)
            room = f"after-{uuid.uuid4().hex[:8]}"
            token = mint(system.secret, room, "ana")
            captions = await http.ws_connect(f"{system.ws_url}/ws/captions/{room}?token={token}")
            speaker = await http.ws_connect(f"{system.ws_url}/ws/audio/{room}?token={token}&speak=en&listen=en")
            await speaker.receive_json()
            final = await say_and_await_final(speaker, captions, "en")
            await speaker.close()
            await captions.close()
    assert final["text"]


async def _answers_ready(http: aiohttp.ClientSession, system: Meeting) -> bool:
    try:
        return await _ready(http, system)
    except aiohttp.ClientError:
        return False
