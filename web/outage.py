"""Telling clients that the broker is unreachable.

While the broker takes no records (see :meth:`~web.ingest.Ingest.available`), what clients send is
dropped and nothing new reaches them. Every socket on this gateway is told so once, with an
``unavailable`` error, when the outage begins, and stays open: captions and speech resume by
themselves when the broker is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from web.background import Background
from web.ingest import Ingest
from web.protocol import error
from web.routing import Router

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.5
UNAVAILABLE = "the message broker is unreachable: what you send is dropped and nothing new reaches you until it is back"


class OutageNotice(Background):
    def __init__(self, router: Router, ingest: Ingest) -> None:
        self._router = router
        self._ingest = ingest

    async def _forever(self) -> None:
        told = False
        while True:
            available = self._ingest.available(time.time())
            if not available and not told:
                log.error("the broker is unreachable: telling every client")
                for room_id in self._router.local_room_ids:
                    for connection in self._router.connections(room_id):
                        connection.outbox.put(error("unavailable", UNAVAILABLE))
            told = not available
            await asyncio.sleep(CHECK_EVERY_S)
