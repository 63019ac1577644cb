"""`dragoman dlq` on the live system: a message that keeps failing lands in the DLQ with its
error, a re-drive that fails again comes back with every attempt counted, and once its cause is
removed a re-drive processes it and the DLQ shows it re-driven. A failure the stage declares
(``Failed``) is announced and dead-lettered at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from schemas import Transcript, UtteranceDropped
from streams import dlq, history
from streams.broker import free_port
from streams.topics import UTTERANCES_DROPPED
from tests.conftest import ARTIFACTS, Meeting, dragoman
from tests.flaky_stage import FLAKY

pytestmark = pytest.mark.integration


@pytest.fixture
def flaky_stage(meeting: Meeting, tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    cause, done, port = tmp_path / "cause", tmp_path / "done", free_port()
    cause.write_text("the model for this language is not installed")
    done.touch()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(tmp_path),
    }  # killed below: its data dir goes with tmp_path
    with (ARTIFACTS / "flaky_stage.log").open("w") as log:
        stage = subprocess.Popen(
            [sys.executable, "-m", "tests.flaky_stage", meeting.broker, str(cause), str(done), str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield cause, done, port
        finally:
            stage.kill()
            stage.wait()


async def wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.5)


async def stage_ready(http: aiohttp.ClientSession, port: int) -> None:
    async def ready() -> bool:
        try:
            async with http.get(f"http://127.0.0.1:{port}/ready") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(ready, timeout=90)


async def send_final(meeting: Meeting) -> str:
    """A final caption to the flaky stage; its utterance id."""
    utterance = f"u-{uuid.uuid4().hex[:8]}"
    transcript = Transcript(
        room_id="dlq-room", speaker_id="ana", utterance_id=utterance, revision=0, language="fr", text="bonjour",
        is_final=True, audio_start_s=0, audio_end_s=1, speech_started_at=time.time() - 1, speech_ended_at=time.time(),
    )  # fmt: skip
    await history.append(meeting.broker, [(FLAKY.name, "dlq-room", transcript, {})])
    return utterance


async def test_a_dead_letter_is_redriven_after_its_cause_is_removed(
    meeting: Meeting, flaky_stage: tuple[Path, Path, int], http: aiohttp.ClientSession
) -> None:
    cause, done, port = flaky_stage
    await stage_ready(http, port)
    utterance = await send_final(meeting)

    async def letter_with(attempts: int) -> dlq.Letter | None:
        for letter in await dlq.letters(meeting.broker, stage="flaky"):
            if letter.letter.attempts == attempts and letter.letter.value and utterance.encode() in letter.letter.value:
                return letter
        return None

    # Three attempts (two retries with backoff), then the DLQ, with the error.
    await wait_for(lambda: letter_with(3), timeout=30)
    first = await letter_with(3)
    seen = [(x.letter.letter_id, x.letter.attempts, x.status) for x in await dlq.letters(meeting.broker, stage="flaky")]
    assert first is not None and first.status == "dead" and "not installed" in first.letter.error, seen
    listing = dragoman(meeting, "dlq", "list", "--stage", "flaky").stdout
    assert f"{first.letter.letter_id}" in listing and "dead" in listing
    shown = dragoman(meeting, "dlq", "show", first.letter.letter_id).stdout
    assert '"text": "bonjour"' in shown and "not installed" in shown

    # Re-driven while the cause is still there: it fails again and comes back with six attempts.
    dragoman(meeting, "dlq", "redrive", first.letter.letter_id)
    await wait_for(lambda: letter_with(6), timeout=30)
    assert done.read_text() == ""

    # The cause removed, a re-drive of everything still dead processes it.
    cause.unlink()
    output = dragoman(meeting, "dlq", "redrive", "--stage", "flaky").stdout
    assert "re-drove 1 letters" in output

    async def processed() -> bool:
        return utterance in done.read_text().split()

    await wait_for(processed, timeout=30)
    letters = [
        x for x in await dlq.letters(meeting.broker, stage="flaky") if utterance.encode() in (x.letter.value or b"")
    ]
    assert [(x.letter.attempts, x.status) for x in letters] == [(3, "redriven"), (6, "redriven")]
    assert "redriven" in dragoman(meeting, "dlq", "list", "--stage", "flaky").stdout


async def test_a_declared_failure_is_announced_and_dead_lettered_without_a_retry(
    meeting: Meeting, flaky_stage: tuple[Path, Path, int], http: aiohttp.ClientSession
) -> None:
    cause, done, port = flaky_stage
    cause.write_text("give up: the recognizer kept failing")
    await stage_ready(http, port)
    utterance = await send_final(meeting)

    async def letters() -> list[dlq.Letter]:
        return [
            x for x in await dlq.letters(meeting.broker, stage="flaky") if utterance.encode() in (x.letter.value or b"")
        ]

    async def announced() -> list[UtteranceDropped]:
        logged = history.read(meeting.broker, UTTERANCES_DROPPED, UtteranceDropped, key="dlq-room")
        return [x.record async for x in logged if x.record.utterance_id == utterance]

    await wait_for(letters, timeout=30)
    await wait_for(announced, timeout=10)
    [letter] = await letters()
    assert letter.letter.attempts == 1 and "kept failing" in letter.letter.error
    assert [(a.stage, a.reason) for a in await announced()] == [("flaky", "error")]
    assert done.read_text() == ""
