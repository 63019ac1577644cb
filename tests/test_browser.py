"""The demo page in headless Chromium, its microphone fed a recording: the recording's words must
appear as captions on the page. Driven over the DevTools protocol; a screenshot is kept."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile

from tests.conftest import ARTIFACTS, Meeting
from tests.speech import prompt_pcm, silence

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (infra/dev installs it)"),
]
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required", "--window-size=1100,800", "--remote-debugging-port=0",
]  # fmt: skip


class DevTools:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws, self._ids = ws, itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self._ws.receive_json(timeout=30)
            if message.get("id") == call_id:
                assert "error" not in message, message
                return dict(message.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@contextlib.asynccontextmanager
async def chromium(microphone: Path) -> AsyncIterator[DevTools]:
    """Headless Chromium with ``microphone`` as its fake capture device, driven over DevTools."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [str(CHROMIUM), *CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={microphone}",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http:
                page = await first_page(http, Path(profile))
                async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    yield DevTools(ws)
        finally:
            os.killpg(browser.pid, signal.SIGKILL)  # chromium's helpers too
            browser.wait()


async def first_page(http: aiohttp.ClientSession, profile: Path) -> dict[str, Any]:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text().strip():
        assert time.monotonic() < deadline, "chromium did not start"
        await asyncio.sleep(0.2)
    port = port_file.read_text().split()[0]
    pages: list[dict[str, Any]] = []
    while not pages:  # the port file can appear before the first tab does
        assert time.monotonic() < deadline, "chromium opened no page"
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        await asyncio.sleep(0.2)
    return pages[0]


def microphone(pcm: bytes) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    recording = ARTIFACTS / "fake-microphone.wav"
    soundfile.write(recording, np.frombuffer(pcm, "<i2"), 16_000, subtype="PCM_16")
    return recording


async def test_the_demo_page_shows_what_its_microphone_hears(meeting: Meeting) -> None:
    recording = microphone(silence(1.5) + prompt_pcm("en", "agent-newlocation") + silence(3))
    async with chromium(recording) as tools:
        room = f"browser-{uuid.uuid4().hex[:6]}"
        query = f"room={room}&name=Browser&speak=en&listen=en&autojoin=1"
        await tools.call("Page.navigate", url=f"{meeting.url}/?{query}#token={meeting.token}")
        captions, error = "", None
        deadline = time.monotonic() + 90
        while "extension" not in captions.lower() and time.monotonic() < deadline:
            await asyncio.sleep(1)
            captions = await tools.evaluate("document.querySelector('#captions ol')?.innerText ?? ''") or ""
            error = await tools.evaluate("(e => e.hidden ? null : e.textContent)(document.querySelector('#error'))")
            assert not error, error
        shot = await tools.call("Page.captureScreenshot", format="png")
        (ARTIFACTS / "demo-page.png").write_bytes(base64.b64decode(shot["data"]))
        people = await tools.evaluate("document.querySelector('#participants').innerText")
    assert "please enter a new extension" in captions.lower(), captions
    assert "Browser" in people


OPTIONS = "[...document.querySelector('select[name=%s]').options].map(o => [o.value, o.dataset.route || '', o.text])"


async def test_the_pickers_offer_what_the_server_serves_and_mark_pivots(meeting: Meeting) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{meeting.url}/v1/languages") as response:
        listed = await response.json()
    async with chromium(microphone(silence(1))) as tools:
        await tools.call("Page.navigate", url=f"{meeting.url}/?speak=fr#token={meeting.token}")
        speak: list[list[str]] = []
        deadline = time.monotonic() + 30
        while not speak and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            speak = await tools.evaluate(OPTIONS % "speak") or []
        listen = await tools.evaluate(OPTIONS % "listen")
        shot = await tools.call("Page.captureScreenshot", format="png")
        (ARTIFACTS / "language-pickers.png").write_bytes(base64.b64decode(shot["data"]))
    languages = listed["languages"]
    assert [code for code, *_ in speak] == [c for c, s in languages.items() if s["speak"]]
    assert [code for code, *_ in listen] == [c for c, s in languages.items() if s["listen"]]
    routes = {code: kind for code, kind, _ in listen}
    french = languages["fr"]["translations"]
    assert routes["fr"] == "same"
    assert {c for c, kind in routes.items() if kind == "pivot"} == {c for c, r in french.items() if r["via"]}
    assert {c for c, kind in routes.items() if kind == "none"} == {"eo"}, "French does not reach Esperanto"
    pivoted = next(text for code, kind, text in listen if kind == "pivot")
    assert "via" in pivoted, pivoted
