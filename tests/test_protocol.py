"""PROTOCOL.md's rules against the live gateway of `dragoman up`: one test per rule, real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import aiohttp
import pytest

from tests.conftest import Meeting, socket_url
from web.auth import mint
from web.ingest import MAX_MESSAGE_BYTES

pytestmark = pytest.mark.integration


def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    message = await ws.receive(timeout=10)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return dict(json.loads(message.data))


@pytest.mark.parametrize("endpoint", ["audio", "captions"])
@pytest.mark.parametrize(
    "token",
    ["", "garbage", "wrong-signature", "other-room", "expired"],
)
async def test_bad_tokens_are_closed_with_4001_before_any_message(
    meeting: Meeting, http: aiohttp.ClientSession, endpoint: str, token: str
) -> None:
    name = room()
    value = {
        "": "",
        "garbage": "garbage",
        "wrong-signature": mint("not-the-gateway-secret-32-bytes-long", name, "u"),
        "other-room": mint(meeting.secret, "another-room", "u"),
        "expired": mint(meeting.secret, name, "u", ttl_s=-5),
    }[token]
    ws = await http.ws_connect(f"{meeting.ws_url}/ws/{endpoint}/{name}?token={value}")
    message = await ws.receive(timeout=10)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4001


async def test_unsupported_language_is_refused_with_1008(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    ws = await http.ws_connect(socket_url(meeting, "audio", room(), "u", speak="xx", listen="en"))
    error = await next_json(ws)
    assert error["type"] == "error" and error["code"] == "unsupported_language"
    assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008


async def test_recoverable_errors_leave_the_connection_open(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    ws = await http.ws_connect(socket_url(meeting, "audio", room(), "u", speak="en", listen="en"))
    session = await next_json(ws)
    assert session["type"] == "session" and session["sample_rate"] == 16_000
    await ws.send_bytes(b"\x00" * 3)
    assert (await next_json(ws))["code"] == "bad_frame"
    await ws.send_str("{not json")
    assert (await next_json(ws))["code"] == "bad_request"
    await ws.send_str(json.dumps({"type": "dance"}))
    assert (await next_json(ws))["code"] == "bad_request"
    await ws.send_str(json.dumps({"type": "audio", "pcm_b64": "***"}))
    assert (await next_json(ws))["code"] == "bad_frame"
    await ws.send_str(json.dumps({"type": "languages", "speak": "en", "listen": "zz"}))
    assert (await next_json(ws))["code"] == "unsupported_language"
    await ws.send_str(json.dumps({"type": "audio", "pcm_b64": base64.b64encode(b"\x00\x00" * 160).decode()}))
    await ws.send_str(json.dumps({"type": "ping"}))
    assert await next_json(ws) == {"type": "pong"}
    await ws.close()


async def test_oversized_frames_are_closed_with_1009(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    ws = await http.ws_connect(socket_url(meeting, "audio", room(), "u"))
    await next_json(ws)
    await ws.send_bytes(b"\x00" * 40_000)
    while (await ws.receive(timeout=10)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
        pass
    assert ws.close_code == 1009


async def test_signaling_is_relayed_by_user_id(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    name = room()
    alice = await http.ws_connect(socket_url(meeting, "signaling", name, "alice"))
    bob = await http.ws_connect(socket_url(meeting, "signaling", name, "bob"))
    assert (await next_json(alice))["type"] == "participants"
    assert (await next_json(bob))["type"] == "participants"
    await alice.send_str(json.dumps({"type": "offer", "to": "bob", "payload": {"sdp": "v=0 offer"}}))
    assert await next_json(bob) == {"type": "offer", "from": "alice", "payload": {"sdp": "v=0 offer"}}
    await bob.send_str(json.dumps({"type": "answer", "to": "alice", "payload": {"sdp": "v=0 answer"}}))
    assert await next_json(alice) == {"type": "answer", "from": "bob", "payload": {"sdp": "v=0 answer"}}
    await bob.send_str(json.dumps({"type": "ice", "payload": {}}))
    assert (await next_json(bob))["code"] == "bad_request"
    for ws in (alice, bob):
        await ws.close()


async def test_health_and_metrics_answer(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{meeting.url}/healthz") as response:
        health = await response.json()
        assert response.status == 200 and health["status"] == "ok"
        assert set(health) == {"status"}, health  # public: nothing about the inside
        assert meeting.broker not in json.dumps(health)
    async with http.get(f"{meeting.url}/metrics") as response:
        assert "dragoman_connections" in await response.text()


async def test_one_clients_garbage_does_not_touch_anothers_session(
    meeting: Meeting, http: aiohttp.ClientSession
) -> None:
    name = room()
    good = await http.ws_connect(socket_url(meeting, "audio", name, "good"))
    bad = await http.ws_connect(socket_url(meeting, "audio", name, "bad"))
    await next_json(good)
    await next_json(bad)
    await bad.send_bytes(b"\x00" * 40_001)
    await asyncio.sleep(0.5)
    await good.send_str(json.dumps({"type": "ping"}))
    assert await next_json(good) == {"type": "pong"}
    await good.close()


ACCEPTED_OR_NOT = [2, 31_998, 32_000, 0, 1, 3, 31_999, 640]
CLOSED = [32_001, 32_002, 40_000, 70_000]


async def answer_to(ws: aiohttp.ClientWebSocketResponse, frame: bytes | str) -> str:
    """What one frame gets: "accepted" (nothing before the pong of the ping sent after it), the code of
    the error it got, or the code the socket was closed with."""
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame)
    await ws.send_str(json.dumps({"type": "ping"}))
    answers: list[str] = []
    while True:
        message = await ws.receive(timeout=10)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return f"closed {ws.close_code}"
        answer = json.loads(message.data)
        if answer == {"type": "pong"}:
            return answers[0] if answers else "accepted"
        answers.append(str(answer["code"]))


def pcm(size: int) -> bytes:
    return b"\x01\x00" * (size // 2) + b"\x01" * (size % 2)


async def test_frames_up_to_one_second_are_audio_and_larger_ones_close_1009(
    meeting: Meeting, http: aiohttp.ClientSession
) -> None:
    """PROTOCOL.md: 10 ms to 1 s of PCM per frame, at most 32,000 bytes (itself allowed); empty or odd
    frames are `bad_frame`; larger closes with 1009. (The size rule itself: tests/test_gateway_units.py.)"""
    async with http.ws_connect(socket_url(meeting, "audio", room(), "sizer")) as ws:
        await next_json(ws)  # session
        for size in ACCEPTED_OR_NOT:
            assert await answer_to(ws, pcm(size)) == ("bad_frame" if size == 0 or size % 2 else "accepted"), size
            await asyncio.sleep(size / 32_000)  # in real time: no rate limit is what is tested here
    for size in CLOSED:
        async with http.ws_connect(socket_url(meeting, "audio", room(), "sizer")) as ws:
            await next_json(ws)
            assert await answer_to(ws, pcm(size)) == "closed 1009", size


async def test_base64_audio_commands_follow_the_same_limits(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    """The same PCM as a base64 `audio` command: a second of it (42,668 characters) is audio too."""
    async with http.ws_connect(socket_url(meeting, "audio", room(), "b64")) as ws:
        await next_json(ws)
        for size in [*ACCEPTED_OR_NOT, *CLOSED]:
            command = json.dumps({"type": "audio", "pcm_b64": base64.b64encode(pcm(size)).decode()})
            is_audio = 0 < size <= 32_000 and size % 2 == 0
            expected = "accepted" if is_audio else "bad_frame"
            if len(command) > MAX_MESSAGE_BYTES:  # 70,000 bytes as base64: too long a message to read at all
                expected = "closed 1009"
            assert await answer_to(ws, command) == expected, size
            await asyncio.sleep(size / 32_000 if is_audio else 0)


async def test_two_participants_with_one_name_are_two_users(meeting: Meeting, http: aiohttp.ClientSession) -> None:
    """The demo page's token mint: a display name is not an identity."""
    name = room()
    minted = []
    for _ in range(2):
        async with http.post(f"{meeting.url}/v1/tokens", json={"name": "Ana", "room": name},
                             headers={"Authorization": f"Bearer {meeting.token}"}) as response:  # fmt: skip
            assert response.status == 200
            minted.append(await response.json())
    first, second = minted
    assert first["user_id"] != second["user_id"] and first["name"] == second["name"] == "Ana"
    assert 0 < first["expires_in"] <= 24 * 3600

    def signaling(token: str) -> str:
        return f"{meeting.ws_url}/ws/signaling/{name}?token={token}"

    ana1, ana2 = [await http.ws_connect(signaling(m["token"])) for m in minted]
    carlos = await http.ws_connect(socket_url(meeting, "signaling", name, "carlos"))
    for ws in (ana1, ana2, carlos):
        await next_json(ws)  # participants
    await carlos.send_str(json.dumps({"type": "offer", "to": second["user_id"], "payload": {"sdp": "for ana 2"}}))
    assert await next_json(ana2) == {"type": "offer", "from": "carlos", "payload": {"sdp": "for ana 2"}}
    await ana1.send_str(json.dumps({"type": "ping"}))
    assert await next_json(ana1) == {"type": "pong"}, "the other Ana got a signal that was not hers"
    for ws in (ana1, ana2, carlos):
        await ws.close()
