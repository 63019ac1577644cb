"""The gateway: client WebSockets in and out of the pipeline (PROTOCOL.md).

Ingest (``/ws/audio``) produces ``audio.raw`` and ``room.events``; egress is
one consumer per process that reads the output topics from the tail and
fans each record out to the local sockets the :class:`Router` picks. The two
share nothing but the event loop: a failing egress is restarted on its own
and never stops ingest, and the reverse.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from aiohttp import WSMsgType, web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiolimiter import AsyncLimiter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas import (
    SAMPLE_RATE,
    Envelope,
    Record,
    RoomEvent,
    RoomEventKind,
    Signal,
    SignalKind,
    StageLoad,
    SynthesizedAudio,
    Transcript,
    TranscriptionUpdate,
    Translation,
    decode,
    encode,
)
from streams import metrics
from streams.languages import SUPPORTED_LANGUAGES
from streams.model_paths import ModelPaths, is_test_model
from streams.settings import Settings
from streams.topics import (
    BY_NAME,
    BY_RECORD,
    EGRESS_STATE_TOPICS,
    EGRESS_TOPICS,
    STAGE_SOURCES,
    TEXT_ORIGINAL,
    TEXT_TRANSLATED,
    TopicSpec,
)
from web import auth
from web.admission import Admission, PipelineLoad
from web.ingest import BYTES_PER_SECOND, MAX_FRAME_BYTES, BadFrame, FrameGrouper
from web.routing import Connection, ConnectionKind, Outbox, Router, error_message
from web.transcription import Transcriptions, get_transcription, post_transcription

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4001
CLOSE_POLICY = 1008
STATIC = Path(__file__).parent / "static"
EGRESS_RESTART_DELAY_S = 1.0
SPEAKER_REFUSED = (
    "the service is at capacity: your speech is not being transcribed; it is admitted again as soon as there is room"
)
BACKLOG_REPLAY = 200
"""Messages per text partition the egress re-reads at start, so the captions backlog survives a restart."""


class Gateway:
    """Kafka clients and local connections of one gateway process."""

    def __init__(self, settings: Settings, bootstrap: str, jwt_secret: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.jwt_secret = jwt_secret
        self.router = Router()
        self.producer: AIOKafkaProducer | None = None
        self.egress_running = False
        self._in_flight = 0
        self.live_since = float("inf")
        self.transcriptions = Transcriptions()
        self.load = PipelineLoad({stage: settings.partitions for stage in STAGE_SOURCES})
        self.admission = Admission(self.load, settings.max_speakers, settings.admit_max_backlog_s)
        self._egress_task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0, enable_idempotence=False)
        await self.producer.start()
        self._egress_task = asyncio.create_task(self._egress_forever())

    async def stop(self, app: web.Application) -> None:
        if self._egress_task:
            self._egress_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._egress_task
        if self.producer:
            await self.producer.stop()

    def connection(
        self, kind: ConnectionKind, room_id: str, user_id: str, language: str | None, session_id: str | None = None
    ) -> Connection:
        """A local socket as the router sees it, with this gateway's bound on its outbox."""
        outbox = Outbox(self.settings.send_queue_frames)
        return Connection(kind, room_id, session_id or uuid.uuid4().hex, user_id, language, outbox)

    # -- ingest -----------------------------------------------------------------------

    def overloaded(self) -> bool:
        return self._in_flight >= self.settings.max_ingest_backlog

    async def produce(self, *records: Envelope) -> None:
        """Send without waiting for delivery; the in-flight count is what overload is judged by."""
        assert self.producer is not None
        for record in records:
            topic = BY_RECORD[type(record)].name
            delivery = await self.producer.send(topic, key=record.key.encode(), value=encode(record))
            self._in_flight += 1
            delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        self._in_flight -= 1
        if not delivery.cancelled() and delivery.exception() is not None:
            log.error("produce failed: %r", delivery.exception())

    # -- egress -------------------------------------------------------------------------

    async def _egress_forever(self) -> None:
        while True:
            try:
                await self._egress()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("egress consumer failed; restarting")
            self.egress_running = False
            await asyncio.sleep(EGRESS_RESTART_DELAY_S)

    async def _egress(self) -> None:
        """No consumer group: this process reads every partition itself. Room membership from the
        beginning (every gateway knows every room), recent captions for the backlog, the rest from the tail."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            await consumer.topics()  # loads partition metadata

            def partitions(specs: tuple[TopicSpec, ...]) -> list[TopicPartition]:
                return [TopicPartition(s.name, p) for s in specs for p in consumer.partitions_for_topic(s.name) or ()]

            heads, tails = partitions(EGRESS_STATE_TOPICS), partitions(EGRESS_TOPICS)
            consumer.assign(heads + tails)
            await consumer.seek_to_beginning(*heads)
            ends = await consumer.end_offsets(tails)
            for tp in tails:
                replay = BACKLOG_REPLAY if tp.topic in (TEXT_ORIGINAL.name, TEXT_TRANSLATED.name) else 0
                consumer.seek(tp, max(0, ends[tp] - replay))
            self.live_since = time.time()
            self.egress_running = True
            async for message in consumer:
                try:
                    record = decode(cast(type[Envelope], BY_NAME[message.topic].record), message.value)
                except ValueError as exc:
                    log.warning("egress: undecodable %s@%d: %s", message.topic, message.offset, exc)
                    continue
                if isinstance(record, TranscriptionUpdate):
                    self.transcriptions.on_update(record)
                elif isinstance(record, StageLoad):
                    self.load.update(record)
                else:
                    self.deliver(cast(Record, record))
        finally:
            await consumer.stop()

    def deliver(self, record: Record) -> None:
        now = time.time()
        if record.timings and record.timings[-1].sent_at >= self.live_since:  # not what was replayed at start
            self._observe(record, now)
        for connection, messages in self.router.route(record):
            for message in messages:
                connection.outbox.put(message)

    @staticmethod
    def _observe(record: Record, now: float) -> None:
        metrics.observe_last_stage(record)
        if isinstance(record, Transcript) and record.is_final and not isinstance(record, Translation):
            metrics.END_TO_END.labels("final_caption").observe(now - record.speech_ended_at)
        if isinstance(record, SynthesizedAudio) and record.chunk_index == 0:
            metrics.END_TO_END.labels("first_audio").observe(now - record.speech_ended_at)


# --- handlers ---------------------------------------------------------------------------

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


async def _open(request: web.Request) -> tuple[web.WebSocketResponse, auth.Claims | None]:
    """Accept the socket, then authenticate; a bad token is closed with 4001 before any room message."""
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=20)
    await ws.prepare(request)
    gateway = request.app[GATEWAY]
    try:
        claims = auth.verify(gateway.jwt_secret, request.query.get("token"), request.match_info["room"])
    except auth.Unauthorized as exc:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=f"unauthorized: {exc}".encode()[:120])
        return ws, None
    return ws, claims


async def _refuse_language(ws: web.WebSocketResponse, *codes: str | None) -> bool:
    bad = [code for code in codes if code is not None and code not in SUPPORTED_LANGUAGES]
    if bad:
        await ws.send_str(error_message("unsupported_language", f"unsupported language code {bad[0]!r}"))
        await ws.close(code=CLOSE_POLICY, message=b"unsupported_language")
    return bool(bad)


async def _pump(ws: web.WebSocketResponse, outbox: Outbox) -> None:
    """Send a connection's outbox in order until the socket closes."""
    while not ws.closed:
        item = await outbox.get()
        if isinstance(item, bytes):
            await ws.send_bytes(item)
        else:
            await ws.send_str(item)


CommandHandler = Callable[[dict[str, Any]], Awaitable[bool]]
"""Handles one client JSON command; False when its ``type`` is not one this endpoint knows."""


def parse_command(data: str) -> dict[str, Any] | None:
    """A client text frame as a command object, or None when it is not a JSON object with a string type."""
    try:
        command = json.loads(data)
    except ValueError:
        return None
    return command if isinstance(command, dict) and isinstance(command.get("type"), str) else None


class Throttle:
    """A connection's fair share: a leaky bucket, and one ``rate_limited`` error per episode of excess."""

    def __init__(self, rate_per_s: float, burst_s: float, what: str) -> None:
        self._bucket = AsyncLimiter(rate_per_s * burst_s, burst_s)
        self._what = what
        self._told = False

    async def allows(self, ws: web.WebSocketResponse, amount: float = 1) -> bool:
        if self._bucket.has_capacity(amount):
            await self._bucket.acquire(amount)  # returns at once: there is capacity
            self._told = False
            return True
        metrics.DROPPED.labels("gateway", "rate_limited").inc()
        if not self._told:
            self._told = True
            await ws.send_str(error_message("rate_limited", f"{self._what}: refused until you slow down"))
        return False


async def _serve(
    ws: web.WebSocketResponse,
    connection: Connection,
    gateway: Gateway,
    endpoint: str,
    on_command: CommandHandler,
    on_binary: Callable[[bytes], Awaitable[None]] | None = None,
) -> None:
    """Register ``connection`` with the router and serve its client until the socket closes.

    Every endpoint answers ``ping``, refuses what it cannot read with ``bad_request`` and
    commands beyond ``commands_per_s`` with ``rate_limited``, leaving the connection open.
    (Base64 ``audio`` commands are audio: the audio socket's own throttle counts them.)
    """
    rate = gateway.settings.commands_per_s
    commands = Throttle(rate, 1.0, f"more than {rate:g} commands a second")
    for first in gateway.router.add(connection):
        connection.outbox.put(first)
    metrics.CONNECTIONS.labels(endpoint).inc()
    pump = asyncio.create_task(_pump(ws, connection.outbox))
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                if on_binary is None:
                    await ws.send_str(error_message("bad_request", f"/ws/{endpoint} takes no binary frames"))
                else:
                    await on_binary(message.data)
            elif message.type == WSMsgType.TEXT:
                command = parse_command(message.data)
                if (command is None or command["type"] != "audio") and not await commands.allows(ws):
                    continue
                if command is None:
                    await ws.send_str(error_message("bad_request", "text frames must be JSON objects with a 'type'"))
                elif command["type"] == "ping":
                    await ws.send_json({"type": "pong"})
                elif not await on_command(command):
                    await ws.send_str(error_message("bad_request", f"unknown message type {command['type']!r}"))
    finally:
        pump.cancel()
        gateway.router.remove(connection)
        metrics.CONNECTIONS.labels(endpoint).dec()


def _room_event(kind: RoomEventKind, connection: Connection, name: str, speak: str | None) -> RoomEvent:
    return RoomEvent(
        room_id=connection.room_id,
        kind=kind,
        session_id=connection.session_id,
        user_id=connection.user_id,
        name=name,
        speak=speak,
        listen=connection.language or "",
        at=time.time(),
    )


async def audio_socket(request: web.Request) -> web.WebSocketResponse:
    ws, claims = await _open(request)
    if claims is None:
        return ws
    gateway = request.app[GATEWAY]
    room_id = request.match_info["room"]
    speak = request.query.get("speak", "en")
    listen = request.query.get("listen", speak)
    if await _refuse_language(ws, speak, listen):
        return ws
    session_id = uuid.uuid4().hex
    connection = gateway.connection("audio", room_id, claims.user_id, listen, session_id)
    grouper = FrameGrouper(room_id, session_id, claims.user_id, gateway.settings.frame_group_ms)
    await ws.send_json(
        {
            "type": "session",
            "session_id": session_id,
            "room_id": room_id,
            "user_id": claims.user_id,
            "speak": speak,
            "listen": listen,
            "sample_rate": SAMPLE_RATE,
        }
    )
    await gateway.produce(_room_event(RoomEventKind.JOINED, connection, claims.name, speak))
    burst_s = gateway.settings.audio_burst_s
    audio_rate = Throttle(BYTES_PER_SECOND, burst_s, f"audio more than {burst_s:g} s ahead of real time")
    admitted = refused = False

    async def send_audio(pcm: bytes) -> None:
        nonlocal admitted, refused
        if not await audio_rate.allows(ws, len(pcm)):
            return
        if not admitted:  # a new speaker: is there room for one more?
            admitted = gateway.admission.admit(time.time())
            if not admitted:
                metrics.DROPPED.labels("gateway", "not_admitted").inc()
                if not refused:
                    refused = True
                    metrics.ADMISSIONS.labels("refused").inc()
                    await ws.send_str(error_message("overloaded", SPEAKER_REFUSED))
                return
            metrics.ADMISSIONS.labels("admitted").inc()
        try:
            frames = grouper.push(pcm, speak)
        except BadFrame as exc:
            await ws.send_str(error_message("bad_frame", str(exc)))
            return
        if frames and gateway.overloaded():
            metrics.DROPPED.labels("gateway", "overloaded").inc(len(frames))
            await ws.send_str(error_message("overloaded", "the server is shedding load: audio was dropped"))
            return
        await gateway.produce(*frames)

    async def on_command(command: dict[str, Any]) -> bool:
        nonlocal speak, listen
        kind = command["type"]
        if kind == "flush":
            await gateway.produce(*grouper.flush(speak, end_of_utterance=True))
        elif kind == "audio":
            try:
                pcm = base64.b64decode(str(command.get("pcm_b64", "")), validate=True)
            except (binascii.Error, ValueError):
                await ws.send_str(error_message("bad_frame", "pcm_b64 is not valid base64"))
                return True
            await send_audio(pcm)
        elif kind == "languages":
            new_speak, new_listen = command.get("speak", speak), command.get("listen", listen)
            if not all(isinstance(c, str) and c in SUPPORTED_LANGUAGES for c in (new_speak, new_listen)):
                await ws.send_str(error_message("unsupported_language", f"unsupported: {new_speak!r}/{new_listen!r}"))
                return True
            await gateway.produce(*grouper.flush(speak, end_of_utterance=False))
            speak, listen = new_speak, new_listen
            connection.language = listen
            await gateway.produce(_room_event(RoomEventKind.LANGUAGES_CHANGED, connection, claims.name, speak))
        else:
            return False
        return True

    try:
        await _serve(ws, connection, gateway, "audio", on_command, on_binary=send_audio)
    finally:
        await gateway.produce(*grouper.flush(speak, end_of_utterance=True))
        await gateway.produce(_room_event(RoomEventKind.LEFT, connection, claims.name, speak))
    return ws


async def captions_socket(request: web.Request) -> web.WebSocketResponse:
    ws, claims = await _open(request)
    if claims is None:
        return ws
    gateway = request.app[GATEWAY]
    language = request.query.get("language")
    if await _refuse_language(ws, language):
        return ws
    connection = gateway.connection("captions", request.match_info["room"], claims.user_id, language)
    # A viewer asking for a language is a listener of it: the room translates into it.
    if language:
        await gateway.produce(_room_event(RoomEventKind.JOINED, connection, claims.name, None))

    async def no_commands(command: dict[str, Any]) -> bool:
        return False

    try:
        await _serve(ws, connection, gateway, "captions", no_commands)
    finally:
        if language:
            await gateway.produce(_room_event(RoomEventKind.LEFT, connection, claims.name, None))
    return ws


def translation_warning(settings: Settings) -> str | None:
    """Said plainly wherever the system reports on itself, while NLLB is the random test model."""
    if not is_test_model(ModelPaths(settings.models_dir).nllb(settings.nllb_model)):
        return None
    return (
        f"NLLB model {settings.nllb_model!r} is a test model with random weights: its translations are nonsense "
        "(pairs Apertium covers, such as en-es, are translated by Apertium when it is installed)"
    )


async def signaling_socket(request: web.Request) -> web.WebSocketResponse:
    ws, claims = await _open(request)
    if claims is None:
        return ws
    gateway = request.app[GATEWAY]
    room_id = request.match_info["room"]
    connection = gateway.connection("signaling", room_id, claims.user_id, None)

    async def relay(command: dict[str, Any]) -> bool:
        if command["type"] not in {kind.value for kind in SignalKind}:
            return False
        to, payload = command.get("to"), command.get("payload", {})
        if not isinstance(to, str) or not isinstance(payload, dict):
            await ws.send_str(error_message("bad_request", "signaling needs 'to' (a user id) and an object 'payload'"))
            return True
        kind = SignalKind(command["type"])
        await gateway.produce(Signal(room_id=room_id, kind=kind, from_user=claims.user_id, to_user=to, payload=payload))
        return True

    await _serve(ws, connection, gateway, "signaling", relay)
    return ws


async def readyz(request: web.Request) -> web.Response:
    """200 only when this gateway can serve a meeting end to end: its Kafka clients run and every stage
    owns every partition with warm models (from the workers' ``pipeline.load`` reports). `up` and load
    balancers wait for it; ``/healthz`` says only that the process is up."""
    gateway = request.app[GATEWAY]
    stages = gateway.load.readiness(time.time())
    ready = gateway.producer is not None and gateway.egress_running and all(stages.values())
    body = {"ready": ready, "egress": gateway.egress_running, "stages": stages}
    return web.json_response(body, status=200 if ready else 503)


async def healthz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    healthy = gateway.producer is not None and gateway.egress_running
    body: dict[str, object] = {
        "status": "ok" if healthy else "degraded",
        "egress": gateway.egress_running,
        "bootstrap": gateway.bootstrap,
    }
    if warning := translation_warning(gateway.settings):
        body["warnings"] = [warning]
    return web.json_response(body, status=200 if healthy else 503)


async def mint_token(request: web.Request) -> web.Response:
    """A host (a token for room ``*``) mints a participant's token: the demo page's join form uses it."""
    gateway = request.app[GATEWAY]
    try:  # verified for room "*": only a host token passes
        auth.verify(gateway.jwt_secret, auth.request_token(request.headers, request.query), "*")
    except auth.Unauthorized as exc:
        return web.json_response({"detail": f"unauthorized: {exc}"}, status=401)
    try:
        body = await request.json()
        user, room = str(body["user"]).strip(), str(body["room"]).strip()
    except (ValueError, KeyError, TypeError):
        return web.json_response({"detail": "send JSON {user, room}"}, status=400)
    if not user or not room:
        return web.json_response({"detail": "user and room must not be empty"}, status=400)
    return web.json_response({"token": auth.mint(gateway.jwt_secret, room, user, name=user)})


async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def prometheus(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def create_app(settings: Settings, bootstrap: str, jwt_secret: str) -> web.Application:
    app = web.Application(client_max_size=int(settings.max_upload_mb * 1024 * 1024))
    gateway = Gateway(settings, bootstrap, jwt_secret)
    app[GATEWAY] = gateway
    app.on_startup.append(gateway.start)
    app.on_cleanup.append(gateway.stop)
    app.router.add_get("/ws/audio/{room}", audio_socket)
    app.router.add_get("/ws/captions/{room}", captions_socket)
    app.router.add_get("/ws/signaling/{room}", signaling_socket)
    app.router.add_get("/", demo_page)
    app.router.add_static("/static/", STATIC)
    app.router.add_post("/v1/tokens", mint_token)
    app.router.add_post("/v1/transcriptions", post_transcription)
    app.router.add_get("/v1/transcriptions/{id}", get_transcription)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app
