"""Presence leases, from one gateway's side (see :class:`~schemas.RoomEvent`).

It renews the participants it serves: one ``renewed`` event per room with a socket here, every
third of the lease. And it expires everyone else's: participants of any gateway that stopped
renewing leave their rooms here, and this gateway's signaling sockets get the new participant list.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka.errors import KafkaError

from schemas import RoomEvent, RoomEventKind
from web.background import Background
from web.ingest import Ingest
from web.routing import Router

EXPIRE_EVERY_S = 0.5


class Presence(Background):
    def __init__(self, router: Router, ingest: Ingest, gateway_id: str, lease_s: float) -> None:
        self._router = router
        self._ingest = ingest
        self._gateway_id = gateway_id
        self._lease_s = lease_s

    def renewal(self, room_id: str, now: float) -> RoomEvent:
        return RoomEvent(room_id=room_id, kind=RoomEventKind.RENEWED, session_id="", user_id="", listen="", at=now,
                         gateway_id=self._gateway_id)  # fmt: skip

    async def _forever(self) -> None:
        renew_at = 0.0
        while True:
            now = time.time()
            if now >= renew_at:
                renew_at = now + self._lease_s / 3
                with contextlib.suppress(KafkaError):  # the broker is away: the next renewal may reach it
                    await self._ingest.produce(*(self.renewal(room, now) for room in self._router.local_room_ids))
            for connection, messages in self._router.expire(now):
                for message in messages:
                    connection.outbox.put(message)
            await asyncio.sleep(EXPIRE_EVERY_S)
