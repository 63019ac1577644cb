"""The gateway's WebSockets (PROTOCOL.md): ``/ws/audio``, ``/ws/captions`` and ``/ws/signaling``.

Each handler authenticates, registers its connection with the router (whose outbox the egress
fills), and turns what the client sends into records for ingest: audio grouped into
``audio.raw`` messages, joins, leaves and language changes on ``room.events``, signals on
``signaling``. Every endpoint answers ``ping``, and refuses what it cannot read, and commands or
audio beyond a fair share, with a clear error while the connection stays open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web
from aiolimiter import AsyncLimiter
from pydantic import ValidationError

from schemas import SAMPLE_RATE, RoomEventKind, Signal, SignalKind
from streams import metrics
from streams.languages import LanguageCatalogue
from web import auth
from web.gateway import GATEWAY, Gateway
from web.ingest import BYTES_PER_SECOND, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, BadFrame, FrameGrouper, check_frame
from web.protocol import (
    COMMANDS,
    AudioCommand,
    Command,
    Flush,
    Languages,
    Ping,
    Pong,
    Session,
    SignalCommand,
    error,
    render,
)
from web.routing import Connection, Outbox

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4001
CLOSE_POLICY = 1008
SPEAKER_REFUSED = (
    "the service is at capacity: your speech is not being transcribed; it is admitted again as soon as there is room"
)


SocketHandler = Callable[[web.Request, web.WebSocketResponse, auth.Claims, Gateway], Awaitable[None]]
"""Serves one authenticated client socket until it closes."""


def _websocket(handler: SocketHandler) -> Callable[[web.Request], Awaitable[web.WebSocketResponse]]:
    """The route for ``handler``: accept the socket, then authenticate; a bad token is closed with
    4001 before any room message, and only a verified client reaches ``handler``."""

    async def route(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20)
        await ws.prepare(request)
        gateway = request.app[GATEWAY]
        try:
            claims = auth.verify(gateway.jwt_secret, request.query.get("token"), request.match_info["room"])
        except auth.Unauthorized as exc:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=f"unauthorized: {exc}".encode()[:120])
            return ws
        await handler(request, ws, claims, gateway)
        return ws

    return route


def unsupported(catalogue: LanguageCatalogue, speak: object, listen: object) -> str | None:
    """Why a participant cannot speak ``speak`` or listen in ``listen`` here (None: both are served;
    a None ``speak`` is a captions viewer, who only reads). ``GET /v1/languages`` lists what is."""
    if speak is not None and not (isinstance(speak, str) and catalogue.speakable(speak)):
        return f"nothing here recognizes and translates speech in {speak!r}: see GET /v1/languages"
    if not (isinstance(listen, str) and catalogue.listenable(listen)):
        return f"nothing here translates into {listen!r}: see GET /v1/languages"
    return None


async def _refuse_language(ws: web.WebSocketResponse, catalogue: LanguageCatalogue, speak: str | None,
                           listen: str) -> bool:  # fmt: skip
    """Refuse a join in a language nothing here serves: an ``unsupported_language`` error, then 1008."""
    problem = unsupported(catalogue, speak, listen)
    if problem:
        await ws.send_str(error("unsupported_language", problem))
        await ws.close(code=CLOSE_POLICY, message=b"unsupported_language")
    return problem is not None


async def _pump(ws: web.WebSocketResponse, outbox: Outbox) -> None:
    """Send a connection's outbox in order until the socket closes."""
    while not ws.closed:
        item = await outbox.get()
        if isinstance(item, bytes):
            await ws.send_bytes(item)
        else:
            await ws.send_str(item)


CommandHandler = Callable[[Command], Awaitable[bool]]
"""Handles one client command; False when it is not one this endpoint takes."""
NOT_A_COMMAND = "text frames must be JSON objects with a 'type'"


def parse_command(data: str) -> Command | str:
    """A client text frame as a command (PROTOCOL.md), or why it is not one (for a ``bad_request``)."""
    try:
        return COMMANDS.validate_json(data)
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        first, where = problems[0]["type"], problems[0]["loc"]
        if first in ("json_invalid", "union_tag_not_found") or not where:  # not even an object with a type
            return NOT_A_COMMAND
        if first == "union_tag_invalid":
            return f"unknown message type {problems[0]['input'].get('type')!r}"
        fields = "; ".join(f"{'.'.join(str(part) for part in p['loc'][1:])}: {p['msg']}" for p in problems)
        return f"bad {where[0]!r} message: {fields}"


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
            await ws.send_str(error("rate_limited", f"{self._what}: refused until you slow down"))
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
    ids = {"room_id": connection.room_id, "session_id": connection.session_id, "user_id": connection.user_id}
    log.info("/ws/%s opened in room %s", endpoint, connection.room_id, extra=ids)
    pump = asyncio.create_task(_pump(ws, connection.outbox))
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                if len(message.data) > MAX_FRAME_BYTES:
                    reason = f"binary frame of {len(message.data)} bytes is over {MAX_FRAME_BYTES}"
                    await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=reason.encode())
                    break
                if on_binary is None:
                    await ws.send_str(error("bad_request", f"/ws/{endpoint} takes no binary frames"))
                else:
                    await on_binary(message.data)
            elif message.type == WSMsgType.TEXT:
                command = parse_command(message.data)
                if not isinstance(command, AudioCommand) and not await commands.allows(ws):
                    continue
                if isinstance(command, str):
                    await ws.send_str(error("bad_request", command))
                elif isinstance(command, Ping):
                    await ws.send_str(render(Pong()))
                elif not await on_command(command):
                    await ws.send_str(error("bad_request", f"/ws/{endpoint} takes no {command.type!r} messages"))
    finally:
        pump.cancel()
        gateway.router.remove(connection)
        metrics.CONNECTIONS.labels(endpoint).dec()
        log.info("/ws/%s closed (%s)", endpoint, ws.close_code, extra=ids)


@_websocket
async def audio_socket(request: web.Request, ws: web.WebSocketResponse, claims: auth.Claims, gateway: Gateway) -> None:
    room_id = request.match_info["room"]
    speak = request.query.get("speak", "en")
    listen = request.query.get("listen", speak)
    if await _refuse_language(ws, gateway.catalogue, speak, listen):
        return
    session_id = uuid.uuid4().hex
    connection = gateway.connection("audio", room_id, claims.user_id, listen, session_id)
    grouper = FrameGrouper(room_id, session_id, claims.user_id, gateway.settings.frame_group_ms)
    await ws.send_str(render(Session(session_id=session_id, room_id=room_id, user_id=claims.user_id, speak=speak,
                                     listen=listen, sample_rate=SAMPLE_RATE)))  # fmt: skip
    await gateway.publish(gateway.room_event(RoomEventKind.JOINED, connection, claims.name, speak))
    burst_s = gateway.settings.audio_burst_s
    audio_rate = Throttle(BYTES_PER_SECOND, burst_s, f"audio more than {burst_s:g} s ahead of real time")
    admitted = refused = False

    async def send_audio(pcm: bytes) -> None:
        nonlocal admitted, refused
        try:  # a malformed frame is an error whatever the load: it is not audio, and admits no one
            check_frame(pcm)
        except BadFrame as exc:
            await ws.send_str(error("bad_frame", str(exc)))
            return
        if not await audio_rate.allows(ws, len(pcm)):
            return
        if not admitted:  # a new speaker: is there room for one more?
            admitted = gateway.admission.admit(session_id, time.time())
            if not admitted:
                metrics.DROPPED.labels("gateway", "not_admitted").inc()
                if not refused:
                    refused = True
                    metrics.ADMISSIONS.labels("refused").inc()
                    await ws.send_str(error("overloaded", SPEAKER_REFUSED))
                return
            metrics.ADMISSIONS.labels("admitted").inc()
        frames = grouper.push(pcm, speak)
        if frames and gateway.ingest.overloaded():
            metrics.DROPPED.labels("gateway", "overloaded").inc(len(frames))
            await ws.send_str(error("overloaded", "the server is shedding load: audio was dropped"))
            return
        await gateway.publish(*frames)

    async def on_command(command: Command) -> bool:
        nonlocal speak, listen
        if isinstance(command, Flush):
            await gateway.publish(*grouper.flush(speak, end_of_utterance=True))
        elif isinstance(command, AudioCommand):
            try:
                pcm = base64.b64decode(command.pcm_b64, validate=True)
            except (binascii.Error, ValueError):
                await ws.send_str(error("bad_frame", "pcm_b64 is not valid base64"))
                return True
            await send_audio(pcm)
        elif isinstance(command, Languages):
            new_speak, new_listen = command.speak or speak, command.listen or listen
            if problem := unsupported(gateway.catalogue, new_speak, new_listen):
                await ws.send_str(error("unsupported_language", problem))
                return True
            await gateway.publish(*grouper.flush(speak, end_of_utterance=False))
            speak, listen = new_speak, new_listen
            connection.language = listen
            await gateway.publish(gateway.room_event(RoomEventKind.LANGUAGES_CHANGED, connection, claims.name, speak))
        else:
            return False
        return True

    try:
        await _serve(ws, connection, gateway, "audio", on_command, on_binary=send_audio)
    finally:
        await gateway.publish(*grouper.flush(speak, end_of_utterance=True))
        await gateway.publish(gateway.room_event(RoomEventKind.LEFT, connection, claims.name, speak))


@_websocket
async def captions_socket(
    request: web.Request, ws: web.WebSocketResponse, claims: auth.Claims, gateway: Gateway
) -> None:
    language = request.query.get("language")
    if language is not None and await _refuse_language(ws, gateway.catalogue, None, language):
        return
    connection = gateway.connection("captions", request.match_info["room"], claims.user_id, language)
    # A viewer asking for a language is a listener of it: the room translates into it.
    if language:
        await gateway.publish(gateway.room_event(RoomEventKind.JOINED, connection, claims.name, None))

    async def no_commands(command: Command) -> bool:
        return False

    try:
        await _serve(ws, connection, gateway, "captions", no_commands)
    finally:
        if language:
            await gateway.publish(gateway.room_event(RoomEventKind.LEFT, connection, claims.name, None))


@_websocket
async def signaling_socket(
    request: web.Request, ws: web.WebSocketResponse, claims: auth.Claims, gateway: Gateway
) -> None:
    room_id = request.match_info["room"]
    connection = gateway.connection("signaling", room_id, claims.user_id, None)

    async def relay(command: Command) -> bool:
        if not isinstance(command, SignalCommand):
            return False
        signal = Signal(room_id=room_id, kind=SignalKind(command.type), from_user=claims.user_id, to_user=command.to,
                        payload=command.payload)  # fmt: skip
        await gateway.publish(signal)
        return True

    await _serve(ws, connection, gateway, "signaling", relay)
