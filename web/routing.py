"""Egress routing: which local socket gets what, in which language.

Pure: :class:`Router` maps a record from the egress topics to the messages
each local connection should receive; :class:`Outbox` is a connection's
bounded send queue. The gateway wires them to Kafka and aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from schemas import Record, SynthesizedAudio, Transcript, Translation
from streams import metrics

Outgoing = str | bytes
"""A text (JSON) or binary WebSocket message."""


class Outbox:
    """A bounded send queue. When full, the oldest *audio* goes first (captions are small and matter
    more), and the client is told once per overflow with an ``overloaded`` error."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Outgoing] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._overflowed = False
        self.dropped = 0

    def put(self, item: Outgoing) -> None:
        if len(self._items) >= self._capacity:
            self._drop_one()
        self._items.append(item)
        self._ready.set()

    def _drop_one(self) -> None:
        victim = next((i for i, item in enumerate(self._items) if isinstance(item, bytes)), 0)
        del self._items[victim]
        self.dropped += 1
        metrics.DROPPED.labels("gateway", "slow_client").inc()
        if not self._overflowed:
            self._overflowed = True
            self._items.append(
                error_message("overloaded", "you are receiving slower than the meeting: audio was dropped")
            )

    async def get(self) -> Outgoing:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if not self._items:
            self._overflowed = False
        return item


def error_message(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


@dataclass(eq=False)
class Connection:
    """One client WebSocket, as the router sees it."""

    kind: Literal["audio", "captions"]
    room_id: str
    session_id: str
    user_id: str
    language: str | None
    """Audio: the listening language. Captions: the language filter (None: every caption)."""
    outbox: Outbox = field(repr=False, default_factory=lambda: Outbox(64))


def caption_message(record: Transcript, backlog: bool = False) -> str:
    source = record.source_language if isinstance(record, Translation) else record.language
    return json.dumps(
        {
            "event": "caption",
            "speaker_id": record.speaker_id,
            "utterance_id": record.utterance_id,
            "language": record.language,
            "source_language": source,
            "text": record.text,
            "is_final": record.is_final,
            "timestamp_ms": int(record.speech_ended_at * 1000),
            "backlog": backlog,
        },
        ensure_ascii=False,
    )


class Router:
    def __init__(self) -> None:
        self._rooms: dict[str, set[Connection]] = {}

    def add(self, connection: Connection) -> None:
        self._rooms.setdefault(connection.room_id, set()).add(connection)

    def remove(self, connection: Connection) -> None:
        members = self._rooms.get(connection.room_id, set())
        members.discard(connection)
        if not members:
            self._rooms.pop(connection.room_id, None)

    def connections(self, room_id: str) -> set[Connection]:
        return self._rooms.get(room_id, set())

    def route(self, record: Record) -> list[tuple[Connection, list[Outgoing]]]:
        """Who gets ``record``, and as which messages."""
        deliveries: list[tuple[Connection, list[Outgoing]]] = []
        for connection in self.connections(record.room_id):
            messages = self._messages_for(connection, record)
            if messages:
                deliveries.append((connection, messages))
        return deliveries

    @staticmethod
    def _messages_for(connection: Connection, record: Record) -> list[Outgoing]:
        if isinstance(record, Transcript):
            wanted = connection.kind == "captions" and connection.language in (None, record.language)
            return [caption_message(record)] if wanted else []
        if isinstance(record, SynthesizedAudio):
            if connection.kind != "audio" or connection.language != record.language:
                return []
            if connection.user_id == record.speaker_id:  # never one's own speech back
                return []
            return audio_messages(record)
        return []


def audio_messages(chunk: SynthesizedAudio) -> list[Outgoing]:
    ids = {"speaker_id": chunk.speaker_id, "utterance_id": chunk.utterance_id}
    messages: list[Outgoing] = []
    if chunk.chunk_index == 0:
        start = {"type": "audio_start", **ids, "language": chunk.language, "sample_rate": chunk.sample_rate}
        messages.append(json.dumps(start))
    if chunk.pcm:
        messages.append(chunk.pcm)
    if chunk.is_last:
        messages.append(json.dumps({"type": "audio_end", **ids}))
    return messages
