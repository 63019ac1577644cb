"""The whole meeting, end to end: `dragoman up`, real speech in, captions and speech out.

A client written to PROTOCOL.md streams recorded Spanish prompts with
speak=es; a listener with listen=en must get the Spanish finals (WER <= 0.25),
English captions, and English speech framed by audio_start/audio_end, and the
speaker must get no audio back.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.conftest import Meeting, socket_url
from tests.speech import PROMPTS, prompt_pcm, prompt_transcripts, silence, word_error_rate

pytestmark = pytest.mark.integration

FRAME_BYTES = 3_200  # 100 ms


@dataclass
class Received:
    json: list[dict[str, object]] = field(default_factory=list)
    binary: list[bytes] = field(default_factory=list)


async def collect(ws: aiohttp.ClientWebSocketResponse, into: Received) -> None:
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            into.json.append(json.loads(message.data))
        elif message.type == aiohttp.WSMsgType.BINARY:
            into.binary.append(message.data)


async def stream_speech(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, speed: float = 1.0) -> None:
    """Send PCM in 100 ms frames, ``speed`` times faster than real time."""
    for start in range(0, len(pcm), FRAME_BYTES):
        await ws.send_bytes(pcm[start : start + FRAME_BYTES])
        await asyncio.sleep(0.1 / speed)


async def wait_until(condition: object, timeout: float) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.2)

    await asyncio.wait_for(poll(), timeout)


async def test_spanish_speaker_is_heard_and_read_in_english(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    prompts = PROMPTS["es"]

    listener_ws = await http.ws_connect(socket_url(meeting, "audio", room, "ana", speak="en", listen="en"))
    captions_ws = await http.ws_connect(socket_url(meeting, "captions", room, "ana"))
    speaker_ws = await http.ws_connect(socket_url(meeting, "audio", room, "carlos", speak="es", listen="es"))
    signaling_ws = await http.ws_connect(socket_url(meeting, "signaling", room, "ana"))
    listener, captions, speaker, signaling = Received(), Received(), Received(), Received()
    sockets = ((listener_ws, listener), (captions_ws, captions), (speaker_ws, speaker), (signaling_ws, signaling))
    collectors = [asyncio.create_task(collect(ws, into)) for ws, into in sockets]
    await wait_until(lambda: speaker.json and listener.json, timeout=10)
    assert speaker.json[0]["type"] == "session" and speaker.json[0]["speak"] == "es"
    assert listener.json[0]["type"] == "session" and listener.json[0]["listen"] == "en"
    await asyncio.sleep(1.0)  # let the translate worker's room table see the listener join

    for name in prompts:
        await stream_speech(speaker_ws, silence(0.5) + prompt_pcm("es", name) + silence(1.2))

    def finals(language: str) -> list[dict[str, object]]:
        return [c for c in captions.json if c["is_final"] and c["language"] == language]

    def audio_ends() -> list[dict[str, object]]:
        return [m for m in listener.json if m["type"] == "audio_end"]

    try:
        await wait_until(lambda: len(finals("es")) >= len(prompts) and len(audio_ends()) >= len(prompts), timeout=120)
    except TimeoutError:
        summary = [(c["language"], c["is_final"], str(c["text"])[:40]) for c in captions.json]
        pytest.fail(f"captions: {summary}\nlistener: {[m['type'] for m in listener.json]}")
    await asyncio.sleep(1.0)  # anything the speaker might (wrongly) get back would have arrived by now

    spanish = finals("es")
    assert all(c["source_language"] == "es" and c["speaker_id"] == "carlos" for c in spanish)
    wer = word_error_rate([prompt_transcripts("es")[name] for name in prompts], [str(c["text"]) for c in spanish])
    print(f"Spanish streaming WER (Whisper base): {wer:.3f}")
    assert wer <= 0.25, [c["text"] for c in spanish]

    english = finals("en")
    assert len(english) >= len(prompts)
    assert all(c["source_language"] == "es" and c["backlog"] is False for c in english)
    assert {c["utterance_id"] for c in english} == {c["utterance_id"] for c in spanish}

    starts = [m for m in listener.json if m["type"] == "audio_start"]
    assert len(starts) >= len(prompts)
    assert all(m["language"] == "en" and m["sample_rate"] == 16_000 and m["speaker_id"] == "carlos" for m in starts)
    assert listener.binary and all(len(chunk) % 2 == 0 and len(chunk) <= 32_000 for chunk in listener.binary)

    assert not speaker.binary, "the speaker got audio back"
    assert not [m for m in speaker.json if m["type"] in ("audio_start", "audio_end")]

    # Ana's client mutes Carlos's original track while she hears him translated, then restores it.
    mutes = [m for m in signaling.json if m["type"] in ("suppress_original", "restore_original")]
    assert mutes[0] == {"type": "suppress_original", "speaker_id": "carlos", "utterance_id": starts[0]["utterance_id"],
                        "language": "en"}  # fmt: skip
    assert [m["type"] for m in mutes].count("restore_original") >= len(prompts)
    people = [m for m in signaling.json if m["type"] == "participants"][-1]["participants"]
    assert {(p["user_id"], p["speak"], p["listen"]) for p in people} == {("ana", "en", "en"), ("carlos", "es", "es")}

    # A late joiner's captions socket first gets the room's recent finals, marked as backlog.
    late_ws = await http.ws_connect(socket_url(meeting, "captions", room, "late", language="en"))
    late = [await late_ws.receive_json(timeout=10) for _ in english]
    assert [c["text"] for c in late] == [c["text"] for c in english] and all(c["backlog"] for c in late)
    await late_ws.close()

    for ws, _ in sockets:
        await ws.close()
    await asyncio.gather(*collectors)

    async with http.get(f"{meeting.url}/metrics") as response:
        exposition = await response.text()
    for series in (
        'dragoman_stage_processing_seconds_count{stage="stt"}',
        'dragoman_stage_processing_seconds_count{stage="translate"}',
        'dragoman_stage_processing_seconds_count{stage="tts"}',
        'dragoman_stage_queueing_seconds_count{stage="stt"}',
        'dragoman_end_to_end_seconds_count{path="final_caption"}',
        'dragoman_end_to_end_seconds_count{path="first_audio"}',
    ):
        found = re.search(re.escape(series) + r" (\S+)", exposition)
        assert found and float(found[1]) > 0, series
    assert 'dragoman_consumer_lag_messages{group="dragoman-stt",partition=' in exposition
