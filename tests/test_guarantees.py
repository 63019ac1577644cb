"""DESIGN.md's guarantees on the live system: nothing that fails is lost, and a poison message
never blocks its partition."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import DeadLetter, decode
from streams.topics import AUDIO_RAW, DLQ, ROOM_EVENTS, TEXT_ORIGINAL
from tests.conftest import Meeting

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
