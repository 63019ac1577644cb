"""One gateway process, composed: ingest (client → topics), egress (topics → local sockets),
the router between them, presence leases, telling clients of a broker outage, what the workers
report (readiness and admission), and the file transcriptions waiting on results. The handlers
(:mod:`web.sockets`, :mod:`web.transcription`, :mod:`web.app`) reach it through the aiohttp app as
``app[GATEWAY]``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid

from aiohttp import web

from schemas import Envelope, RoomEvent, RoomEventKind
from streams import metrics
from streams.broker import ensure_topics
from streams.languages import LanguageCatalogue
from streams.settings import Settings
from streams.topics import STAGE_SOURCES
from web.admission import Admission, PipelineLoad
from web.egress import Egress
from web.ingest import BrokerUnavailable, Ingest
from web.outage import OutageNotice
from web.presence import Presence
from web.routing import Connection, ConnectionKind, Outbox, Router
from web.transcripts import Transcriptions


class Gateway:
    def __init__(self, settings: Settings, bootstrap: str, jwt_secret: str, catalogue: LanguageCatalogue) -> None:
        self.settings = settings
        self.catalogue = catalogue
        """The languages this deployment serves: joins naming others are refused."""
        self.bootstrap = bootstrap
        self.jwt_secret = jwt_secret
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        """This gateway process, as presence leases name it."""
        self.router = Router(settings.presence_lease_s, catalogue.reachable)
        self.transcriptions = Transcriptions()
        self.load = PipelineLoad({stage: settings.partitions for stage in STAGE_SOURCES})
        self.admission = Admission(self.load, settings.max_speakers, settings.admit_max_backlog_s)
        self.ingest = Ingest(bootstrap, settings.max_ingest_backlog, settings.idempotent_producers)
        self.egress = Egress(bootstrap, settings.fetch_max_wait_ms, self.router, self.load, self.transcriptions)
        self.presence = Presence(self.router, self.ingest, self.id, settings.presence_lease_s)
        self.outage = OutageNotice(self.router, self.ingest)
        # At 0 from the start, for rates and alerts.
        for reason in ("rate_limited", "not_admitted", "overloaded", "unavailable"):
            metrics.DROPPED.labels("gateway", reason)
        for result in ("admitted", "refused"):
            metrics.ADMISSIONS.labels(result)
        metrics.ACTIVE_ROOMS.set_function(lambda: self.router.local_rooms)
        metrics.ACTIVE_SPEAKERS.set_function(lambda: len(self.load.active_streams("stt", time.time())))

    async def start(self, app: web.Application) -> None:
        await ensure_topics(self.bootstrap, self.settings.partitions, self.settings.replication_factor)
        await self.ingest.start()
        await self.egress.start()
        await self.presence.start()
        await self.outage.start()

    async def stop(self, app: web.Application) -> None:
        await self.outage.stop()
        await self.presence.stop()
        await self.egress.stop()
        await self.ingest.stop()

    async def publish(self, *records: Envelope) -> None:
        """Records from a client socket, to ingest. While the broker is not taking records they are
        dropped and counted (:mod:`web.outage` tells the clients); the socket stays open."""
        with contextlib.suppress(BrokerUnavailable):
            await self.ingest.produce(*records)

    def connection(
        self, kind: ConnectionKind, room_id: str, user_id: str, language: str | None, session_id: str | None = None
    ) -> Connection:
        """A local socket as the router sees it, with this gateway's bound on its outbox."""
        outbox = Outbox(self.settings.send_queue_frames)
        return Connection(kind, room_id, session_id or uuid.uuid4().hex, user_id, language, outbox)

    def room_event(self, kind: RoomEventKind, connection: Connection, name: str, speak: str | None) -> RoomEvent:
        """A local socket joined, changed languages or left: as ``room.events`` says it, from this gateway
        (and as presence says it again after an outage)."""
        event = RoomEvent(room_id=connection.room_id, kind=kind, session_id=connection.session_id,
                          user_id=connection.user_id, name=name, speak=speak, listen=connection.language or "",
                          at=time.time(), gateway_id=self.id)  # fmt: skip
        self.presence.said(event)
        return event


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
