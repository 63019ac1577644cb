"""Two gateways and two workers per stage on one broker: a room split across both gateways hears
everything, and killing one gateway leaves the other's clients untouched, and its participants
leave the room within the presence lease (issue #10)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from streams.broker import free_port
from streams.cli.supervisor import Supervisor
from tests.conftest import Meeting, free_ports
from tests.speech import prompt_pcm, silence
from tests.test_meeting import Received, collect, stream_speech, wait_until
from web.auth import mint

pytestmark = pytest.mark.integration


@pytest.fixture
def second_gateway_and_workers(meeting: Meeting) -> Iterator[tuple[str, Supervisor]]:
    port, worker_port = free_port(), free_ports(3)
    supervisor = Supervisor(
        {
            "DRAGOMAN_KAFKA_BOOTSTRAP": meeting.broker,
            "DRAGOMAN_JWT_SECRET": meeting.secret,
            "DRAGOMAN_PORT": str(port),
            "DRAGOMAN_WORKER_WEB_PORT": str(worker_port),
        }
    )
    for stage in ("stt", "translate", "tts"):
        supervisor.spawn(stage, ["worker", "--stage", stage])
    supervisor.spawn("gateway", ["gateway"])
    probes = [f"http://127.0.0.1:{port}/healthz"] + [f"http://127.0.0.1:{worker_port + i}/ready" for i in range(3)]
    supervisor.wait_until_ready(probes, timeout_s=180)
    yield f"ws://127.0.0.1:{port}", supervisor
    supervisor.stop()


async def test_a_room_split_across_two_gateways(
    meeting: Meeting, second_gateway_and_workers: tuple[str, Supervisor]
) -> None:
    gateway_b, supervisor = second_gateway_and_workers
    room = f"split-{uuid.uuid4().hex[:8]}"

    def url(base: str, endpoint: str, user: str, query: str = "") -> str:
        return f"{base}/ws/{endpoint}/{room}?token={mint(meeting.secret, room, user)}{query}"

    async with aiohttp.ClientSession() as http:
        speaker = await http.ws_connect(url(meeting.ws_url, "audio", "carlos", "&speak=es&listen=es"))
        captions_a = await http.ws_connect(url(meeting.ws_url, "captions", "ana"))
        signaling_a = await http.ws_connect(url(meeting.ws_url, "signaling", "carlos"))
        listener_b = await http.ws_connect(url(gateway_b, "audio", "bea", "&speak=en&listen=en"))
        dan_b = await http.ws_connect(url(gateway_b, "audio", "dan", "&speak=en&listen=en"))
        captions_b = await http.ws_connect(url(gateway_b, "captions", "bea"))
        sockets = {"speaker": speaker, "captions_a": captions_a, "signaling_a": signaling_a, "listener_b": listener_b,
                   "dan_b": dan_b, "captions_b": captions_b}  # fmt: skip
        received = {name: Received() for name in sockets}
        tasks = [asyncio.create_task(collect(ws, received[name])) for name, ws in sockets.items()]
        await asyncio.sleep(2.0)  # room tables see both participants

        def finals(name: str, language: str) -> list[dict[str, object]]:
            return [c for c in received[name].json if c.get("is_final") and c.get("language") == language]

        await stream_speech(speaker, silence(0.5) + prompt_pcm("es", "agent-loginok") + silence(1.2))
        await wait_until(
            lambda: (
                all(finals(n, lang) for n in ("captions_a", "captions_b") for lang in ("es", "en"))
                and any(m.get("type") == "audio_end" for m in received["listener_b"].json)
            ),
            timeout=90,
        )
        assert [c["text"] for c in finals("captions_a", "es")] == [c["text"] for c in finals("captions_b", "es")]

        def participants() -> set[object]:
            lists = [m["participants"] for m in received["signaling_a"].json if m.get("type") == "participants"]
            return {p["user_id"] for p in lists[-1]} if lists else set()  # type: ignore[index, union-attr]

        await wait_until(lambda: participants() == {"carlos", "bea", "dan"}, timeout=15)
        supervisor.kill("gateway")
        killed_at = time.monotonic()
        await wait_until(lambda: listener_b.closed or captions_b.closed, timeout=15)
        await wait_until(lambda: participants() == {"carlos"}, timeout=20)  # their gateway stopped renewing
        left_after_s = time.monotonic() - killed_at
        print(f"the dead gateway's participants left the room {left_after_s:.1f} s after the kill")
        assert left_after_s <= 15.0
        before = len(finals("captions_a", "es"))
        await stream_speech(speaker, silence(0.5) + prompt_pcm("es", "agent-loggedoff") + silence(1.2))
        await wait_until(lambda: len(finals("captions_a", "es")) > before, timeout=60)
        assert not speaker.closed and not captions_a.closed
        for ws in (speaker, captions_a, signaling_a):
            await ws.close()
        await asyncio.gather(*tasks)
