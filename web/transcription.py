"""``POST /v1/transcriptions`` (Server-Sent Events) and ``GET /v1/transcriptions/{id}`` (PROTOCOL.md).

The gateway decodes the upload, cuts it into pieces on ``transcription.requests``
and relays the ``transcripts`` updates the transcribe stage publishes. Finished
transcripts are kept by the gateway's egress, which reads the compacted topic
from its start, so the same file again is answered at once, after restarts too.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import soundfile
import soxr
from aiohttp import web
from aiohttp_sse import sse_response

from schemas import SAMPLE_RATE, TranscriptionRequest, TranscriptionStatus
from web import auth
from web.gateway import GATEWAY, Gateway
from web.ingest import BrokerUnavailable
from web.transcripts import result


class BadAudio(ValueError):
    pass


def decode_audio(data: bytes) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Any container libsndfile reads (WAV, FLAC, OGG, MP3...) → 16 kHz mono int16. Blocking."""
    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise BadAudio(f"cannot decode the audio: {exc}") from exc
    if not len(audio):
        raise BadAudio("the file holds no audio")
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return (np.clip(mono, -1, 1) * 32767).astype("<i2")


def pieces(transcription_id: str, language: str | None, pcm: np.ndarray[Any, Any]) -> list[TranscriptionRequest]:
    size = int(TranscriptionRequest.PIECE_S * SAMPLE_RATE)
    count = max(1, math.ceil(len(pcm) / size))
    total = len(pcm) / SAMPLE_RATE
    return [
        TranscriptionRequest(
            transcription_id=transcription_id,
            language=language,
            piece_index=i,
            pieces=count,
            offset_s=i * size / SAMPLE_RATE,
            total_s=total,
            pcm=pcm[i * size : (i + 1) * size].tobytes(),
        )
        for i in range(count)
    ]


def _authorize(gateway: Gateway, request: web.Request) -> None:
    try:
        auth.verify(gateway.jwt_secret, auth.request_token(request.headers, request.query), room_id=None)
    except auth.Unauthorized as exc:
        raise web.HTTPUnauthorized(text=json.dumps({"detail": str(exc)}), content_type="application/json") from exc


async def _body(request: web.Request) -> bytes:
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if getattr(part, "name", None) == "file":
                return bytes(await part.read())  # type: ignore[union-attr]
        raise web.HTTPBadRequest(text=json.dumps({"detail": "multipart body without a 'file' field"}))
    return await request.read()


async def post_transcription(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    _authorize(gateway, request)
    language = request.query.get("language")
    if language is not None and language not in gateway.catalogue.recognized:
        raise web.HTTPBadRequest(text=json.dumps({"detail": f"unsupported language {language!r}"}))
    body = await _body(request)
    transcription_id = hashlib.sha256(body).hexdigest()
    settings = gateway.settings
    # aiohttp-sse frames the events and sends a ``: ping`` comment every keepalive interval.
    # allow_all_methods: the upload is a POST (aiohttp-sse answers only GET by default, as EventSource sends).
    async with sse_response(
        request, sep="\n", ping_interval=settings.sse_keepalive_s, allow_all_methods=True
    ) as events:

        async def send(event: str, data: dict[str, Any]) -> None:
            await events.send(json.dumps(data, ensure_ascii=False), event=event)

        await _relay(gateway, transcription_id, language, body, send)
    return events


async def _relay(
    gateway: Gateway, transcription_id: str, language: str | None, body: bytes,
    send: Callable[[str, dict[str, Any]], Awaitable[None]],
) -> None:  # fmt: skip
    """Send the file's transcription as it goes: from the store, or from the transcribe stage."""
    settings, store = gateway.settings, gateway.transcriptions
    if transcription_id in store.done:
        await send("done", result(store.done[transcription_id]))
        return
    if store.running >= settings.max_transcriptions:
        await send("error", {"code": "busy", "detail": f"{store.running} transcriptions are running: try again later"})
        return
    with store.waiting(transcription_id) as updates:
        try:
            pcm = await asyncio.get_running_loop().run_in_executor(None, decode_audio, body)
        except BadAudio as exc:
            await send("error", {"code": "bad_audio", "detail": str(exc)})
            return
        try:
            try:
                await gateway.ingest.deliver(*pieces(transcription_id, language, pcm))
            except BrokerUnavailable as exc:
                await send("error", {"code": "unavailable", "detail": f"the message broker is unreachable: {exc}"})
                return
            try:
                async with asyncio.timeout(settings.transcription_timeout_s):
                    while True:
                        update = await updates.get()
                        if update.status is TranscriptionStatus.PROGRESS:
                            segments = [s.model_dump() for s in update.segments]
                            await send("transcription", {"segments": segments, "current_time": update.current_time,
                                                         "total_time": update.total_time})  # fmt: skip
                        elif update.status is TranscriptionStatus.DONE:
                            await send("done", result(update))
                            return
                        else:
                            await send("error", {"code": update.error_code or "upstream_error",
                                                 "detail": update.detail})  # fmt: skip
                            return
            except TimeoutError:
                await send("error", {"code": "upstream_error", "detail": "no result in time"})
        except ConnectionResetError:  # the client left: nobody to tell
            raise
        except Exception as exc:  # noqa: BLE001 - the client gets a clear error, not a dropped stream
            await send("error", {"code": "internal_error", "detail": repr(exc)})


async def get_transcription(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    _authorize(gateway, request)
    update = gateway.transcriptions.done.get(request.match_info["id"])
    if update is None:
        return web.json_response({"detail": "no such transcript"}, status=404)
    return web.json_response(result(update))
