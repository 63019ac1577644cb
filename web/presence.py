"""Presence leases, from one gateway's side (see :class:`~schemas.RoomEvent`).

It renews the participants it serves: one ``renewed`` event per room with a socket here, every
third of the lease. And it expires everyone else's: participants of any gateway that stopped
renewing leave their rooms here, and this gateway's signaling sockets get the new participant list.

When the broker was away long enough for a renewal to fail (refused, or queued and never
delivered), every participant here may have expired everywhere; when any record was lost, a join
may have been among them: either way the first renewal that gets through again is every
participant's join, said again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from schemas import RoomEvent, RoomEventKind
from web.background import Background
from web.ingest import BrokerUnavailable, Ingest
from web.routing import Router

log = logging.getLogger(__name__)

EXPIRE_EVERY_S = 0.5


class Presence(Background):
    def __init__(self, router: Router, ingest: Ingest, gateway_id: str, lease_s: float) -> None:
        self._router = router
        self._ingest = ingest
        self._gateway_id = gateway_id
        self._lease_s = lease_s
        self._joined: dict[str, RoomEvent] = {}
        """The latest join (or language change) of every participant here, by session."""
        self._rejoin = False
        """A renewal failed: the next one is every participant's join instead."""
        self._lost = 0
        """Records the ingest had lost when a renewal last got through: should it have lost more
        since, a join may be among them, and the next renewal is every participant's join too."""

    def said(self, event: RoomEvent) -> None:
        """Note a room event of a participant here: what joins them again after an outage."""
        if event.kind is RoomEventKind.LEFT:
            self._joined.pop(event.session_id, None)
        else:
            self._joined[event.session_id] = event

    def renewal(self, room_id: str, now: float) -> RoomEvent:
        return RoomEvent(room_id=room_id, kind=RoomEventKind.RENEWED, session_id="", user_id="", listen="", at=now,
                         gateway_id=self._gateway_id)  # fmt: skip

    async def _forever(self) -> None:
        renew_at = 0.0
        while True:
            now = time.time()
            if now >= renew_at:
                lost = self._ingest.lost
                rejoin = self._rejoin or lost > self._lost
                if rejoin:
                    rejoined = {"kind": RoomEventKind.JOINED, "at": now}
                    events = [event.model_copy(update=rejoined) for event in self._joined.values()]
                else:
                    events = [self.renewal(room, now) for room in self._router.local_room_ids]
                try:
                    await self._ingest.deliver(*events)
                    if rejoin:
                        log.warning("the broker is back: %d participants joined again", len(events))
                    self._rejoin, self._lost = False, lost
                    renew_at = now + self._lease_s / 3
                except BrokerUnavailable:  # tried again in EXPIRE_EVERY_S: rejoin as soon as it is back
                    self._rejoin = True
            for connection, messages in self._router.expire(now):
                for message in messages:
                    connection.outbox.put(message)
            await asyncio.sleep(EXPIRE_EVERY_S)
