"""POST /v1/transcriptions (SSE) and GET /v1/transcriptions/{id} on the live system."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
import soundfile

from streams.broker import free_port
from streams.cli.supervisor import Supervisor
from tests.conftest import Meeting
from tests.speech import prompt_pcm, prompt_transcripts, silence, word_error_rate

pytestmark = pytest.mark.integration

SPANISH = ["agent-alreadyon", "agent-incorrect", "agent-newlocation", "agent-pass"]
Event = tuple[str, dict[str, object] | None]


def wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.frombuffer(pcm, "<i2"), 16_000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def spanish_file(order: list[str]) -> bytes:
    return wav(b"".join(prompt_pcm("es", name) + silence(0.8) for name in order))


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """Server-sent events as (event, data); keepalive comments as ("keepalive", None)."""
    name, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            yield "keepalive", None
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data += line.removeprefix("data: ")
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def transcribe(http: aiohttp.ClientSession, url: str, token: str, body: bytes) -> list[Event]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "audio/wav"}
    async with http.post(f"{url}/v1/transcriptions?language=es", data=body, headers=headers) as response:
        assert response.status == 200 and response.content_type == "text/event-stream"
        return [event async for event in events(response)]


async def test_a_file_is_transcribed_with_progress_keepalives_and_a_stored_result(
    meeting: Meeting, http: aiohttp.ClientSession
) -> None:
    body = spanish_file(SPANISH)  # about 30 s: two pieces
    got = await transcribe(http, meeting.url, meeting.token, body)
    kinds = [kind for kind, _ in got]
    assert kinds[-1] == "done", got
    assert "transcription" in kinds and "keepalive" in kinds
    progress = next(data for kind, data in got if kind == "transcription")
    assert progress is not None and 0 < float(progress["current_time"]) < float(progress["total_time"])  # type: ignore[arg-type]
    done = got[-1][1]
    assert done is not None and done["id"] == hashlib.sha256(body).hexdigest() and done["language"] == "es"
    wer = word_error_rate([" ".join(prompt_transcripts("es")[n] for n in SPANISH)], [str(done["text"])])
    assert wer <= 0.3, done["text"]

    started = time.monotonic()
    again = await transcribe(http, meeting.url, meeting.token, body)
    assert [kind for kind, _ in again] == ["done"] and again[0][1] == done
    assert time.monotonic() - started < 2

    headers = {"Authorization": f"Bearer {meeting.token}"}
    async with http.get(f"{meeting.url}/v1/transcriptions/{done['id']}", headers=headers) as response:
        assert response.status == 200 and await response.json() == done
    async with http.get(f"{meeting.url}/v1/transcriptions/{'0' * 64}", headers=headers) as response:
        assert response.status == 404


async def test_a_restarted_gateway_answers_from_the_transcript_store(
    meeting: Meeting, http: aiohttp.ClientSession
) -> None:
    body = spanish_file(["agent-loginok"])
    first = await transcribe(http, meeting.url, meeting.token, body)
    assert first[-1][0] == "done"
    port = free_port()
    fresh = Supervisor({"DRAGOMAN_KAFKA_BOOTSTRAP": meeting.broker, "DRAGOMAN_JWT_SECRET": meeting.secret,
                        "DRAGOMAN_PORT": str(port)})  # fmt: skip
    fresh.spawn("gateway", ["gateway"])
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(fresh.wait_until_ready, [f"{url}/healthz"], 60)
        got = await transcribe(http, url, meeting.token, body)
        assert [kind for kind, _ in got] == ["done"] and got[0][1] == first[-1][1]
    finally:
        fresh.stop()


async def test_uploads_beyond_the_limit_are_busy(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    long_one = asyncio.create_task(transcribe(http, meeting.url, meeting.token, spanish_file(SPANISH[::-1])))
    await asyncio.sleep(1.5)  # the first is decoding or transcribing now
    second = await transcribe(http, meeting.url, meeting.token, spanish_file(["auth-thankyou", "agent-user"]))
    assert second[0][0] == "error" and second[0][1] is not None and second[0][1]["code"] == "busy"
    assert (await long_one)[-1][0] == "done"


async def test_bad_audio_and_bad_tokens_are_refused(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    got = await transcribe(http, meeting.url, meeting.token, b"this is not audio")
    assert got[0][0] == "error" and got[0][1] is not None and got[0][1]["code"] == "bad_audio"
    async with http.post(f"{meeting.url}/v1/transcriptions", data=b"x") as response:
        assert response.status == 401
    headers = {"Authorization": "Bearer nonsense"}
    async with http.get(f"{meeting.url}/v1/transcriptions/{'0' * 64}", headers=headers) as response:
        assert response.status == 401
