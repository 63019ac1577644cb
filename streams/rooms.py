"""Room state: who is in a room and which languages they speak and listen in.

The ``rooms`` table holds, per room id, one entry per participant connection.
It is a pure fold over ``room.events``; the stages that need it keep it in a
Faust table whose changelog rebuilds it after a restart.

Presence is a lease (see :class:`~schemas.RoomEvent`): an entry carries when its
gateway last renewed it, :func:`present` keeps those renewed within the lease,
and every event drops the entries whose lease ran out by that event's time.
"""

from __future__ import annotations

from typing import Any

from schemas import RoomEvent, RoomEventKind

RoomState = dict[str, dict[str, Any]]
"""session_id -> {"user_id", "name", "speak", "listen", "gateway_id", "renewed_at"} (JSON, for the table)."""


def present(state: RoomState, now: float, lease_s: float) -> RoomState:
    """The participants whose gateway renewed them within ``lease_s`` of ``now``."""
    return {session: p for session, p in state.items() if now - p.get("renewed_at", 0.0) <= lease_s}


def apply_event(state: RoomState, event: RoomEvent, lease_s: float) -> RoomState:
    """The room after ``event``; a new dict, so the table sees a changed value."""
    participants = present(state, event.at, lease_s)
    if event.kind is RoomEventKind.LEFT:
        participants.pop(event.session_id, None)
    elif event.kind is RoomEventKind.RENEWED:
        for session, p in participants.items():
            if p["gateway_id"] == event.gateway_id:
                participants[session] = {**p, "renewed_at": event.at}
    else:
        participants[event.session_id] = {
            "user_id": event.user_id,
            "name": event.name,
            "speak": event.speak,
            "listen": event.listen,
            "gateway_id": event.gateway_id,
            "renewed_at": event.at,
        }
    return participants


def listening_languages(state: RoomState) -> set[str]:
    return {p["listen"] for p in state.values()}
