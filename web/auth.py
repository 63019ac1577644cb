"""Client tokens: HS256 JWTs with ``sub`` (user), ``room`` (a room id or ``*``), ``exp`` and an optional ``name``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"


class Unauthorized(Exception):
    """Missing, malformed, expired, wrongly signed, or for another room."""


@dataclass(frozen=True)
class Claims:
    user_id: str
    room: str
    name: str


def mint(secret: str, room: str, user_id: str, ttl_s: float = 24 * 3600, name: str | None = None) -> str:
    claims: dict[str, object] = {"sub": user_id, "room": room, "exp": int(time.time() + ttl_s)}
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def request_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """An HTTP request's token: ``Authorization: Bearer`` first, else ``?token=`` (PROTOCOL.md)."""
    return headers.get("Authorization", "").removeprefix("Bearer ").strip() or query.get("token")


def verify(secret: str, token: str | None, room_id: str | None) -> Claims:
    """The token's claims, if it is valid and for ``room_id`` (None: for any room)."""
    if not token:
        raise Unauthorized("missing token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "room", "exp"]})
    except jwt.PyJWTError as exc:
        raise Unauthorized(str(exc)) from exc
    if room_id is not None and claims["room"] not in ("*", room_id):
        raise Unauthorized("token is for another room")
    return Claims(user_id=str(claims["sub"]), room=str(claims["room"]), name=str(claims.get("name", claims["sub"])))
