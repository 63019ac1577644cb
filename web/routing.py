"""Egress routing: which local socket gets what, in which language.

Pure: :class:`Router` maps a record from the egress topics to the messages
each local connection should receive; :class:`Outbox` is a connection's
bounded send queue. The gateway wires them to Kafka and aiohttp.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from schemas import Record, RoomEvent, Signal, SynthesizedAudio, Transcript, Translation, UtteranceDropped
from streams import metrics
from streams.rooms import RoomState, apply_event, present
from web.protocol import (
    AudioEnd,
    AudioStart,
    Caption,
    CaptionDropped,
    LanguageUnreachable,
    Participant,
    Participants,
    RelayedSignal,
    RestoreOriginal,
    SuppressOriginal,
    Unreachable,
    UtteranceDroppedMessage,
    error,
    render,
)

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
            self._items.append(error("overloaded", "you are receiving slower than the meeting: audio was dropped"))

    async def get(self) -> Outgoing:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if not self._items:
            self._overflowed = False
        return item


BACKLOG_CAPTIONS = 50
"""Recent final captions per room that a captions socket gets on connect (``backlog: true``)."""


ConnectionKind = Literal["audio", "captions", "signaling"]


@dataclass(eq=False)
class Connection:
    """One client WebSocket, as the router sees it."""

    kind: ConnectionKind
    room_id: str
    session_id: str
    user_id: str
    language: str | None
    """Audio: the listening language. Captions: the language filter (None: every caption). Signaling: None."""
    outbox: Outbox = field(repr=False, default_factory=lambda: Outbox(64))
    told_unreachable: set[tuple[str, str]] = field(repr=False, default_factory=set)
    """(speaker, their language) pairs this listener was told it cannot be served in its language."""


CaptionText = Transcript | Translation
"""What a caption is rendered from: a transcript, or one of its translations."""


def caption_message(record: CaptionText, backlog: bool = False) -> str:
    return render(Caption(speaker_id=record.speaker_id, utterance_id=record.utterance_id, language=record.language,
                          source_language=record.source_language, text=record.text, tentative=record.tentative,
                          is_final=record.is_final, timestamp_ms=int(record.speech_ended_at * 1000),
                          backlog=backlog))  # fmt: skip


def participants_message(state: RoomState) -> str:
    """Speakers of the room (captions-only viewers are not participants), one entry per user."""
    people = {p.user_id: p for p in state.values() if p.speak}
    fields = {"user_id", "name", "speak", "listen"}
    listing = [Participant(**p.model_dump(include=fields)) for _, p in sorted(people.items())]
    return render(Participants(participants=listing))


@dataclass
class _Progress:
    """What a room's sockets already got of one utterance in one language."""

    revision: int = -1
    final: bool = False
    dropped: bool = False
    chunks: set[int] = field(default_factory=set)


def is_repeat(progress: _Progress, record: Record) -> bool:
    """Whether ``record`` repeats what was delivered (and if not, take note of it). Stages work at least
    once: after a crash a worker redoes what its predecessor had not committed, so the same final, a
    partial older than one shown, a synthesized chunk (a second ``audio_start``) or the announcement
    of an utterance that was delivered can come again. Sockets see each once."""
    if isinstance(record, CaptionText):
        if progress.final or (not record.is_final and record.revision <= progress.revision):
            return True
        progress.revision, progress.final = record.revision, record.is_final
    elif isinstance(record, SynthesizedAudio):
        if record.chunk_index in progress.chunks:
            return True
        progress.chunks.add(record.chunk_index)
    elif isinstance(record, UtteranceDropped):
        if progress.final or progress.dropped:
            return True
        progress.dropped = True
    return False


class Router:
    """Local sockets by room, every room's participants, each room's recent final captions, and what
    was delivered of each utterance (so that nothing is delivered twice). A room's state is freed
    when its last participant leaves."""

    def __init__(self, lease_s: float, reachable: Callable[[str, str], bool] = lambda source, target: True) -> None:
        """``reachable(source, target)``: whether anything here translates ``source`` into ``target``."""
        self._lease_s = lease_s
        self._reachable = reachable
        self._connections: dict[str, set[Connection]] = {}
        self.rooms: dict[str, RoomState] = {}
        self._recent: dict[str, deque[CaptionText]] = {}
        self._delivered: dict[str, dict[tuple[str, str], _Progress]] = {}

    @property
    def local_rooms(self) -> int:
        """Rooms with at least one socket on this gateway."""
        return len(self._connections)

    @property
    def local_room_ids(self) -> list[str]:
        return list(self._connections)

    def add(self, connection: Connection) -> list[Outgoing]:
        """Register a socket; returns what it gets first (captions backlog, participant list)."""
        self._connections.setdefault(connection.room_id, set()).add(connection)
        if connection.kind == "captions":
            recent = self._recent.get(connection.room_id, ())
            return [caption_message(t, backlog=True) for t in recent if connection.language in (None, t.language)]
        if connection.kind == "signaling":
            return [participants_message(self.rooms.get(connection.room_id, {}))]
        return []

    def remove(self, connection: Connection) -> None:
        members = self._connections.get(connection.room_id, set())
        members.discard(connection)
        if not members:
            self._connections.pop(connection.room_id, None)

    def connections(self, room_id: str) -> set[Connection]:
        return self._connections.get(room_id, set())

    def route(self, record: Record, live: bool = True) -> list[tuple[Connection, list[Outgoing]]]:
        """Who gets ``record``, and as which messages; room events and finals also update state.
        A record that is not ``live`` (re-read at start) only updates state."""
        if isinstance(record, RoomEvent):
            return self._room_is(record.room_id, apply_event(self.rooms.get(record.room_id, {}), record, self._lease_s))
        if isinstance(record, CaptionText | SynthesizedAudio | UtteranceDropped):
            progress = self._delivered.setdefault(record.room_id, {}).setdefault(
                (record.utterance_id, record.language), _Progress()
            )
            if is_repeat(progress, record):
                metrics.DROPPED.labels("gateway", "duplicate").inc()
                return []
        if isinstance(record, CaptionText) and record.is_final:
            self._recent.setdefault(record.room_id, deque(maxlen=BACKLOG_CAPTIONS)).append(record)
        if not live:
            return []
        deliveries: list[tuple[Connection, list[Outgoing]]] = []
        for connection in self.connections(record.room_id):
            messages = self._messages_for(connection, record)
            if messages:
                deliveries.append((connection, messages))
        return deliveries

    def expire(self, now: float) -> list[tuple[Connection, list[Outgoing]]]:
        """Take out participants whose gateway stopped renewing them; their rooms' signaling sockets
        here get the new participant list."""
        deliveries: list[tuple[Connection, list[Outgoing]]] = []
        for room_id, state in list(self.rooms.items()):
            kept = present(state, now, self._lease_s)
            if len(kept) < len(state):
                deliveries += self._room_is(room_id, kept)
        return deliveries

    def _room_is(self, room_id: str, state: RoomState) -> list[tuple[Connection, list[Outgoing]]]:
        """Set a room's participants (freeing its state when nobody is left); signaling sockets get
        the participant list when it changed."""
        before = participants_message(self.rooms.get(room_id, {}))
        self.rooms[room_id] = state
        if not state:
            for room_state in (self.rooms, self._recent, self._delivered):
                room_state.pop(room_id, None)
        notices = self._unreachable_notices(room_id, state)
        update = participants_message(state)
        if update == before:
            return notices
        signaling: list[Outgoing] = [update]
        return [*notices, *((c, signaling) for c in self.connections(room_id) if c.kind == "signaling")]

    def _unreachable_notices(self, room_id: str, state: RoomState) -> list[tuple[Connection, list[Outgoing]]]:
        """Each local listener is told once of each speaker whose language nothing here translates into
        theirs: they get nothing of that speaker rather than nonsense."""
        speakers = {(p.user_id, p.speak) for p in state.values() if p.speak}
        deliveries: list[tuple[Connection, list[Outgoing]]] = []
        for connection in self.connections(room_id):
            listen = connection.language
            if connection.kind == "signaling" or listen is None:
                continue
            news = sorted((user, speak) for user, speak in speakers - connection.told_unreachable
                          if user != connection.user_id and not self._reachable(speak, listen))  # fmt: skip
            if news:
                connection.told_unreachable.update(news)
                deliveries.append((connection, [unreachable_message(connection, *n) for n in news]))
        return deliveries

    def listens_in(self, room_id: str, user_id: str) -> set[str]:
        """The languages a user listens in, over all their connections in the room."""
        return {p.listen for p in self.rooms.get(room_id, {}).values() if p.user_id == user_id and p.speak}

    def _messages_for(self, connection: Connection, record: Record) -> list[Outgoing]:
        if isinstance(record, UtteranceDropped):
            return dropped_messages(connection, record)
        if isinstance(record, CaptionText):
            wanted = connection.kind == "captions" and connection.language in (None, record.language)
            return [caption_message(record)] if wanted else []
        if isinstance(record, Signal):
            if connection.kind != "signaling" or connection.user_id != record.to_user:
                return []
            return [render(RelayedSignal(type=record.kind.value, from_user=record.from_user, payload=record.payload))]
        if isinstance(record, SynthesizedAudio):
            if connection.user_id == record.speaker_id:  # never one's own speech back
                return []
            if connection.kind == "audio" and connection.language == record.language:
                return audio_messages(record)
            if connection.kind == "signaling" and record.language in self.listens_in(
                record.room_id, connection.user_id
            ):
                return suppression_messages(record)
        return []


def dropped_messages(connection: Connection, drop: UtteranceDropped) -> list[Outgoing]:
    """Who is told of a dropped utterance: its speaker, and whoever waited for it. A recognition dropped
    by stt concerns the whole room; a translation or its speech, those listening in its language."""
    concerns_everyone = drop.stage == "stt"
    ids = {"speaker_id": drop.speaker_id, "utterance_id": drop.utterance_id, "language": drop.language}
    if connection.kind == "audio":
        if concerns_everyone or connection.user_id == drop.speaker_id or connection.language == drop.language:
            return [render(UtteranceDroppedMessage(**ids, reason=drop.reason))]
    elif connection.kind == "captions" and (concerns_everyone or connection.language in (None, drop.language)):
        at = int(drop.speech_ended_at * 1000)
        return [render(CaptionDropped(**ids, reason=drop.reason, timestamp_ms=at))]
    return []


def unreachable_message(connection: Connection, speaker_id: str, source_language: str) -> Outgoing:
    """A speaker this listener cannot be served: audio sockets get a ``language_unreachable`` message,
    captions sockets an ``unreachable`` event (proposed for PROTOCOL.md)."""
    ids = {"speaker_id": speaker_id, "source_language": source_language, "language": connection.language}
    if connection.kind == "captions":
        return render(Unreachable(**ids))
    said = f"nothing here translates {source_language!r} into {connection.language!r}: this speaker is not heard"
    return render(LanguageUnreachable(**ids, message=said))


def audio_messages(chunk: SynthesizedAudio) -> list[Outgoing]:
    ids = {"speaker_id": chunk.speaker_id, "utterance_id": chunk.utterance_id}
    messages: list[Outgoing] = []
    if chunk.chunk_index == 0:
        messages.append(render(AudioStart(**ids, language=chunk.language, sample_rate=chunk.sample_rate)))
    if chunk.pcm:
        messages.append(chunk.pcm)
    if chunk.is_last:
        messages.append(render(AudioEnd(**ids)))
    return messages


def suppression_messages(chunk: SynthesizedAudio) -> list[Outgoing]:
    """While a listener hears a speaker translated, the speaker's original WebRTC track is muted for them."""
    messages: list[Outgoing] = []
    if chunk.chunk_index == 0:
        messages.append(render(SuppressOriginal(speaker_id=chunk.speaker_id, utterance_id=chunk.utterance_id,
                                                language=chunk.language)))  # fmt: skip
    if chunk.is_last:
        messages.append(render(RestoreOriginal(speaker_id=chunk.speaker_id)))
    return messages
