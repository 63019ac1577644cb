"""Random frames and messages thrown at a live gateway must not touch anyone else's meeting."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Meeting, socket_url
from tests.speech import prompt_pcm, prompt_transcripts, silence, word_error_rate

pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
commands = st.fixed_dictionaries(
    {"type": st.sampled_from(["languages", "flush", "audio", "ping", "offer", "dance", ""])},
    optional={"speak": json_values, "listen": json_values, "pcm_b64": st.text(max_size=40), "to": json_values},
)
client_messages = st.one_of(
    st.binary(max_size=40_000),  # odd lengths, oversized (closes the socket: we reconnect), plain noise
    st.text(max_size=200),  # mostly invalid JSON
    commands.map(json.dumps),
    json_values.map(json.dumps),
)


async def chaos(meeting: Meeting, http: aiohttp.ClientSession, room: str, messages: list[str | bytes]) -> None:
    ws = await http.ws_connect(socket_url(meeting, "audio", room, "chaos", speak="en", listen="es"))
    for message in messages:
        if ws.closed:
            ws = await http.ws_connect(socket_url(meeting, "audio", room, "chaos", speak="en", listen="es"))
        try:
            await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
        except ConnectionResetError:
            continue
        await asyncio.sleep(0.01)
    await ws.close()


async def meeting_under_fire(meeting: Meeting, messages: list[str | bytes]) -> list[str]:
    room = f"fuzz-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        captions = await http.ws_connect(socket_url(meeting, "captions", room, "viewer"))
        speaker = await http.ws_connect(socket_url(meeting, "audio", room, "good", speak="en", listen="en"))
        await speaker.receive_json()
        pcm = silence(0.3) + prompt_pcm("en", "agent-newlocation") + silence(1.0)

        async def speak() -> None:
            for start in range(0, len(pcm), 3200):
                await speaker.send_bytes(pcm[start : start + 3200])
                await asyncio.sleep(0.1)

        await asyncio.gather(speak(), chaos(meeting, http, room, messages))
        finals: list[str] = []
        while not finals:
            caption = await captions.receive_json(timeout=30)
            if caption["speaker_id"] == "good" and caption["is_final"]:
                finals.append(caption["text"])
        await speaker.close()
        await captions.close()
        return finals


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(client_messages, min_size=5, max_size=40))
def test_garbage_from_one_client_leaves_the_others_captions_intact(
    meeting: Meeting, messages: list[str | bytes]
) -> None:
    finals = asyncio.run(meeting_under_fire(meeting, messages))
    assert word_error_rate([prompt_transcripts("en")["agent-newlocation"]], [" ".join(finals)]) <= 0.2, finals
