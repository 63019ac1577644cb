"""DESIGN.md's guarantees on the live system: nothing that fails is lost, and a poison message
never blocks its partition."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import DeadLetter, decode
from streams.topics import AUDIO_RAW, DLQ, ROOM_EVENTS, TEXT_ORIGINAL
from tests.conftest import Meeting, socket_url, worker
from tests.speech import prompt_pcm, prompt_transcripts, silence, word_error_rate

pytestmark = pytest.mark.integration


async def test_poison_messages_go_to_the_dead_letter_queue(meeting: Meeting) -> None:
    room = f"poison-{uuid.uuid4().hex[:8]}"
    poison = {
        topic.name: f"not a record {uuid.uuid4().hex}".encode() for topic in (AUDIO_RAW, TEXT_ORIGINAL, ROOM_EVENTS)
    }
    producer = AIOKafkaProducer(bootstrap_servers=meeting.broker)
    consumer = AIOKafkaConsumer(DLQ.name, bootstrap_servers=meeting.broker, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        for topic, value in poison.items():
            await producer.send_and_wait(topic, key=room.encode(), value=value)
        letters: dict[bytes, DeadLetter] = {}

        async def read() -> None:
            async for message in consumer:
                letter = decode(DeadLetter, message.value)
                letters[letter.value or b""] = letter
                if set(poison.values()) <= set(letters):
                    return

        await asyncio.wait_for(read(), timeout=30)
    finally:
        await producer.stop()
        await consumer.stop()
    for topic, value in poison.items():
        letter = letters[value]
        assert letter.topic == topic and letter.key == room.encode() and letter.attempts == 1
        assert "undecodable" in letter.error or "validation" in letter.error.lower()
    assert letters[poison[AUDIO_RAW.name]].stage == "stt"
    assert letters[poison[TEXT_ORIGINAL.name]].stage == "translate"


async def test_a_worker_killed_mid_utterance_loses_no_speech(meeting: Meeting) -> None:
    """Audio of an open utterance stays unacknowledged, so the restarted worker replays it."""
    room = f"crash-{uuid.uuid4().hex[:8]}"
    speech = prompt_pcm("en", "agent-alreadyon")
    half = len(speech) // 2 // 3200 * 3200
    async with aiohttp.ClientSession() as http:
        captions = await http.ws_connect(socket_url(meeting, "captions", room, "viewer"))
        speaker = await http.ws_connect(socket_url(meeting, "audio", room, "speaker", speak="en", listen="en"))
        await speaker.receive_json()

        async def send(pcm: bytes) -> None:
            for start in range(0, len(pcm), 3200):
                await speaker.send_bytes(pcm[start : start + 3200])
                await asyncio.sleep(0.1)

        await send(silence(0.5) + speech[:half])
        victim = worker(meeting, "stt")
        victim.kill()  # SIGKILL: no clean shutdown, no last commit
        await send(speech[half:] + silence(1.5))
        finals: list[str] = []
        while not finals:
            caption = await captions.receive_json(timeout=90)
            if caption["is_final"]:
                finals.append(str(caption["text"]))
        assert worker(meeting, "stt").pid != victim.pid
        await speaker.close()
        await captions.close()
    assert word_error_rate([prompt_transcripts("en")["agent-alreadyon"]], finals) <= 0.2, finals
