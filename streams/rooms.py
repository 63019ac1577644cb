"""Room state: who is in a room and which languages they speak and listen in.

The ``rooms`` table holds, per room id, one entry per participant connection.
It is a pure fold over ``room.events``; the stages that need it keep it in a
Faust table whose changelog rebuilds it after a restart.

Presence is a lease (see :class:`~schemas.RoomEvent`): an entry carries when its
gateway last renewed it, :func:`present` keeps those renewed within the lease,
and every event drops the entries whose lease ran out by that event's time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from schemas import RoomEvent, RoomEventKind


class Presence(BaseModel):
    """One participant connection in a room: who it is, its languages, and its lease."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    name: str = ""
    speak: str | None
    """None: a captions-only viewer."""
    listen: str
    gateway_id: str = ""
    """The gateway that serves the connection and renews its lease."""
    renewed_at: float = 0.0
    """When its gateway last renewed it (an entry never renewed has expired)."""


RoomState = Mapping[str, Presence]
"""session id → its participant: a room as the ``rooms`` table and the gateways hold it."""

_TABLE_VALUE = TypeAdapter(dict[str, Presence])


def to_table(state: RoomState) -> dict[str, Any]:
    """``state`` as the ``rooms`` table stores it (JSON)."""
    return _TABLE_VALUE.dump_python(dict(state), mode="json")


def from_table(value: Mapping[str, Any]) -> RoomState:
    return _TABLE_VALUE.validate_python(dict(value))


def present(state: RoomState, now: float, lease_s: float) -> dict[str, Presence]:
    """The participants whose gateway renewed them within ``lease_s`` of ``now``."""
    return {session: p for session, p in state.items() if now - p.renewed_at <= lease_s}


def apply_event(state: RoomState, event: RoomEvent, lease_s: float) -> RoomState:
    """The room after ``event``; a new mapping, so the table sees a changed value."""
    participants = present(state, event.at, lease_s)
    if event.kind is RoomEventKind.LEFT:
        participants.pop(event.session_id, None)
    elif event.kind is RoomEventKind.RENEWED:
        for session, p in participants.items():
            if p.gateway_id == event.gateway_id:
                participants[session] = p.model_copy(update={"renewed_at": event.at})
    else:
        participants[event.session_id] = Presence(
            user_id=event.user_id,
            name=event.name,
            speak=event.speak,
            listen=event.listen,
            gateway_id=event.gateway_id,
            renewed_at=event.at,
        )
    return participants


def listening_languages(state: RoomState) -> set[str]:
    return {p.listen for p in state.values()}
