"""The gateway's aiohttp app: the factory that wires every route to one :class:`Gateway`, and the
plain HTTP endpoints (health, readiness, metrics, token minting, the demo page).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import lag
from streams.languages import LanguageCatalogue
from streams.settings import Settings
from web import auth
from web.gateway import GATEWAY, Gateway
from web.sockets import audio_socket, captions_socket, signaling_socket
from web.transcription import get_transcription, post_transcription

STATIC = Path(__file__).parent / "static"
LAG_EVERY_S = 10.0


async def readyz(request: web.Request) -> web.Response:
    """200 only when this gateway can serve a meeting end to end: its Kafka clients run and every stage
    owns every partition with warm models (from the workers' ``pipeline.load`` reports). `up` and load
    balancers wait for it; ``/healthz`` says only that the process is up."""
    gateway = request.app[GATEWAY]
    stages = gateway.load.readiness(time.time())
    ready = gateway.ingest.running and gateway.egress.running and all(stages.values())
    body = {"ready": ready, "egress": gateway.egress.running, "stages": stages}
    return web.json_response(body, status=200 if ready else 503)


async def healthz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    healthy = gateway.ingest.running and gateway.egress.running
    # Public: up or down, and nothing about the inside (no addresses); /readyz says which stage is not ready.
    return web.json_response({"status": "ok" if healthy else "degraded"}, status=200 if healthy else 503)


async def languages(request: web.Request) -> web.Response:
    """Public: every language served here, with its recognizer, its voice and its routes to the others
    (PROTOCOL.md, ``GET /v1/languages``); the demo page's pickers offer exactly these."""
    catalogue = request.app[GATEWAY].catalogue
    body = catalogue.model_dump()
    for code, support in body["languages"].items():
        support["speak"], support["listen"] = catalogue.speakable(code), catalogue.listenable(code)
    return web.json_response(body, dumps=lambda data: json.dumps(data, ensure_ascii=False))


PARTICIPANT_TOKEN_TTL_S = 12 * 3600
"""How long a participant token minted here lets its holder join its room: a working day."""


async def mint_token(request: web.Request) -> web.Response:
    """A host (a token for room ``*``) mints a participant's token: the demo page's join form uses it.

    The name typed is a display name, not an identity: each token gets a user id of its own, so two
    participants both called Ana are two users (signaling, participants and routing go by user id).
    """
    gateway = request.app[GATEWAY]
    try:  # verified for room "*": only a host token passes
        auth.verify(gateway.jwt_secret, auth.request_token(request.headers, request.query), "*")
    except auth.Unauthorized as exc:
        return web.json_response({"detail": f"unauthorized: {exc}"}, status=401)
    try:
        body = await request.json()
    except ValueError:
        body = None
    fields = body if isinstance(body, dict) else {}
    name, room = fields.get("name", fields.get("user")), fields.get("room")  # "user": the older name of "name"
    if not isinstance(name, str) or not isinstance(room, str) or not name.strip() or not room.strip():
        return web.json_response({"detail": "send JSON {name, room}, both non-empty strings"}, status=400)
    name, room = name.strip(), room.strip()
    user_id = uuid.uuid4().hex
    token = auth.mint(gateway.jwt_secret, room, user_id, ttl_s=PARTICIPANT_TOKEN_TTL_S, name=name)
    return web.json_response({"token": token, "user_id": user_id, "name": name, "expires_in": PARTICIPANT_TOKEN_TTL_S})


async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def prometheus(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def create_app(settings: Settings, bootstrap: str, jwt_secret: str, catalogue: LanguageCatalogue) -> web.Application:
    """The gateway; ``catalogue``: what the engines installed serve (``agents.models.describe_languages``)."""
    app = web.Application(client_max_size=int(settings.max_upload_mb * 1024 * 1024))
    gateway = Gateway(settings, bootstrap, jwt_secret, catalogue)
    app[GATEWAY] = gateway
    app.on_startup.append(gateway.start)
    app.on_cleanup.append(gateway.stop)
    app.cleanup_ctx.append(_export_consumer_lag)
    app.router.add_get("/ws/audio/{room}", audio_socket)
    app.router.add_get("/ws/captions/{room}", captions_socket)
    app.router.add_get("/ws/signaling/{room}", signaling_socket)
    app.router.add_get("/", demo_page)
    app.router.add_static("/static/", STATIC)
    app.router.add_post("/v1/tokens", mint_token)
    app.router.add_post("/v1/transcriptions", post_transcription)
    app.router.add_get("/v1/transcriptions/{id}", get_transcription)
    app.router.add_get("/v1/languages", languages)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app


async def _export_consumer_lag(app: web.Application) -> AsyncIterator[None]:
    """Every stage group's lag per partition on this gateway's /metrics (see streams.lag)."""
    task = asyncio.create_task(lag.export_forever(app[GATEWAY].bootstrap, LAG_EVERY_S))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
