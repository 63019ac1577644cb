"""Ingest and egress share nothing in a gateway but its event loop (issue #10): each keeps working
while the other is broken.

A second gateway runs in this process against the meeting's broker and workers, so that the test
can break one of its Kafka clients the way a lost connection would (aiokafka raising
``KafkaConnectionError``), while the meeting's own gateway looks on as an independent client.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from agents.models import describe_languages
from streams.settings import Settings
from tests.conftest import Meeting
from tests.speech import prompt_pcm, silence
from tests.test_meeting import Received, collect, stream_speech, wait_until
from web import egress
from web.app import create_app
from web.auth import mint
from web.gateway import GATEWAY, Gateway

pytestmark = pytest.mark.integration

BROKEN = KafkaConnectionError("broken by the test")


class BreakableConsumer(AIOKafkaConsumer):
    """The egress consumer, failing to start and to fetch while ``broken`` is set."""

    broken = False

    async def start(self) -> None:
        if self.broken:
            raise BROKEN
        await super().start()

    async def __anext__(self) -> Any:
        if self.broken:
            raise BROKEN
        return await super().__anext__()


@pytest.fixture
async def second_gateway(meeting: Meeting, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, Gateway]]:
    """A gateway in this process (its egress consumer breakable), on the meeting's broker."""
    monkeypatch.setattr(egress, "AIOKafkaConsumer", BreakableConsumer)
    app = create_app(Settings(), meeting.broker, meeting.secret, describe_languages(Settings()))
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("")).replace("http", "ws", 1).rstrip("/"), app[GATEWAY]
    BreakableConsumer.broken = False
    await server.close()


def finals(received: Received, language: str) -> list[dict[str, object]]:
    return [c for c in received.json if c.get("is_final") and c.get("language") == language]


def errors(received: Received) -> list[object]:
    return [m["code"] for m in received.json if m.get("type") == "error"]


class Room:
    def __init__(self, http: aiohttp.ClientSession, secret: str) -> None:
        self.id = f"isolation-{uuid.uuid4().hex[:8]}"
        self._http, self._secret = http, secret
        self.received: dict[str, Received] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self, name: str, base: str, endpoint: str, query: str = "") -> aiohttp.ClientWebSocketResponse:
        token = mint(self._secret, self.id, name.split("@")[0])
        ws = await self._http.ws_connect(f"{base}/ws/{endpoint}/{self.id}?token={token}{query}")
        self.received[name] = Received()
        self._tasks.append(asyncio.create_task(collect(ws, self.received[name])))
        return ws

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def say(speaker: aiohttp.ClientWebSocketResponse, prompt: str) -> None:
    await stream_speech(speaker, silence(0.5) + prompt_pcm("en", prompt) + silence(1.5))


async def test_ingest_goes_on_while_egress_is_broken_and_egress_resumes_by_itself(
    meeting: Meeting, second_gateway: tuple[str, Gateway], http: aiohttp.ClientSession
) -> None:
    base, gateway = second_gateway
    room = Room(http, meeting.secret)
    speaker = await room.connect("ana@b", base, "audio", "&speak=en&listen=en")
    await room.connect("viewer@b", base, "captions", "&language=en")
    await room.connect("viewer@a", meeting.ws_url, "captions", "&language=en")
    await stream_speech(speaker, silence(0.3))  # admitted while this gateway still hears the workers' load
    await asyncio.sleep(1.0)

    BreakableConsumer.broken = True
    await wait_until(lambda: not gateway.egress.running, timeout=10)
    await say(speaker, "agent-loggedoff")
    # The meeting's gateway gets the final: this gateway's ingest carried the speech on.
    await wait_until(lambda: finals(room.received["viewer@a"], "en"), timeout=60)
    assert not finals(room.received["viewer@b"], "en"), "delivered through a broken egress"

    BreakableConsumer.broken = False
    await wait_until(lambda: gateway.egress.running, timeout=10)  # restarted by itself
    # It resumed where it stopped: the final spoken while it was broken arrives, once.
    await wait_until(lambda: finals(room.received["viewer@b"], "en"), timeout=30)
    await say(speaker, "agent-loginok")
    await wait_until(lambda: len(finals(room.received["viewer@b"], "en")) >= 2, timeout=60)
    await asyncio.sleep(1.0)

    def utterances(name: str) -> list[object]:
        return [c["utterance_id"] for c in finals(room.received[name], "en")]

    assert utterances("viewer@b") == utterances("viewer@a")
    assert not errors(room.received["ana@b"]), "the speaker was told of a fault that is not theirs"
    await room.close()


async def test_listeners_keep_receiving_while_ingest_is_broken(
    meeting: Meeting, second_gateway: tuple[str, Gateway], http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, gateway = second_gateway
    room = Room(http, meeting.secret)
    await room.connect("beto@b", base, "audio", "&speak=es&listen=es")
    await room.connect("beto-captions@b", base, "captions", "&language=es")
    speaker = await room.connect("ana@a", meeting.ws_url, "audio", "&speak=en&listen=en")
    await asyncio.sleep(1.5)  # the room forms: the workers know beto listens in Spanish

    producer = gateway.ingest._producer
    assert producer is not None

    async def broken_send(*args: object, **kwargs: object) -> None:
        raise BROKEN

    monkeypatch.setattr(producer, "send", broken_send)
    await say(speaker, "agent-loggedoff")
    listener, captions = room.received["beto@b"], room.received["beto-captions@b"]
    await wait_until(
        lambda: finals(captions, "es") and any(m.get("type") == "audio_end" for m in listener.json), timeout=60
    )
    # Broken ingest is told (presence renewals failed), and the sockets stay open.
    await wait_until(lambda: errors(listener) == ["unavailable"] == errors(captions), timeout=10)
    await room.close()
    with contextlib.suppress(Exception):
        await speaker.close()
