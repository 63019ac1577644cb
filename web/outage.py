"""Telling clients that the broker is unreachable.

While the broker takes no records (see :meth:`~web.ingest.Ingest.available`), what clients send is
dropped and nothing new reaches them. Every socket on this gateway is told so once, with an
``unavailable`` error, when the outage begins, and stays open: captions and speech resume by
themselves when the broker is back. Records lost while the broker looked available (one failed, and
the next got through before this looked) are an outage too, however short: told the same way.
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
        told, lost = False, self._ingest.lost
        while True:
            available = self._ingest.available(time.time())
            if (not available or self._ingest.lost > lost) and not told:
                log.error("the broker is unreachable: telling every client")
                for room_id in self._router.local_room_ids:
                    for connection in self._router.connections(room_id):
                        connection.outbox.put(error("unavailable", UNAVAILABLE))
            told, lost = not available, self._ingest.lost
            await asyncio.sleep(CHECK_EVERY_S)
