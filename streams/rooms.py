"""Room state: who is in a room and which languages they speak and listen in.

The ``rooms`` table holds, per room id, one entry per participant connection.
It is a pure fold over ``room.events``; the stages that need it keep it in a
Faust table whose changelog rebuilds it after a restart.
"""

from __future__ import annotations

from typing import Any

from schemas import RoomEvent, RoomEventKind

RoomState = dict[str, dict[str, Any]]
"""session_id -> {"user_id", "name", "speak", "listen"} (JSON-serializable for the table)."""


def apply_event(state: RoomState, event: RoomEvent) -> RoomState:
    """The room after ``event``; a new dict, so the table sees a changed value."""
    participants = dict(state)
    if event.kind is RoomEventKind.LEFT:
        participants.pop(event.session_id, None)
    else:
        participants[event.session_id] = {
            "user_id": event.user_id,
            "name": event.name,
            "speak": event.speak,
            "listen": event.listen,
        }
    return participants


def listening_languages(state: RoomState) -> set[str]:
    return {p["listen"] for p in state.values()}
