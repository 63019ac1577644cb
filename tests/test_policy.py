"""The error policy's every path, without a broker: work that fails on demand, a message that is a
plain record of where it came from, and dead letters and announcements collected in lists."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from schemas import DeadLetter, Envelope, Transcript, UtteranceDropped
from streams.dlq import ATTEMPTS_HEADER
from streams.policy import EXIT_FATAL, ErrorPolicy
from streams.stage import Dropped, Failed, Fatal, Transient


@dataclass(frozen=True)
class Message:
    topic: str = "text.original"
    partition: int = 2
    offset: int = 118
    key: bytes | None = b"room"
    value: bytes | None = b"{}"
    headers: list[tuple[str, bytes]] | None = None


class Exited(Exception):
    pass


def exit_process(code: int) -> None:
    raise Exited(code)


class Harness:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.announced: list[Envelope] = []
        self.policy = ErrorPolicy("translate", self._letter, wait_initial_s=0.01, exit_process=exit_process)  # type: ignore[arg-type]

    async def _letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    async def announce(self, record: Envelope, received_at: float, compute_s: float) -> None:
        self.announced.append(record)

    async def run(self, work: Callable[[], Awaitable[None]], message: Message | None = None) -> None:
        await self.policy.run(message or Message(), work, self.announce)


def failing(times: float, error: Exception) -> tuple[Callable[[], Awaitable[None]], list[int]]:
    """Work that raises ``error`` its first ``times`` calls; and its calls, counted."""
    calls = [0]

    async def work() -> None:
        calls[0] += 1
        if calls[0] <= times:
            raise error

    return work, calls


def dropped_announcement() -> UtteranceDropped:
    transcript = Transcript(room_id="room", speaker_id="ana", utterance_id="s:1", revision=0, language="fr",
                            text="", is_final=True, audio_start_s=0, audio_end_s=1, speech_started_at=1,
                            speech_ended_at=2)  # fmt: skip
    return UtteranceDropped.of(transcript, "translate", "error")


@pytest.mark.parametrize("error", [Transient("the engine restarts"), RuntimeError("undeclared")])
async def test_a_failure_that_passes_is_retried_and_nothing_is_dead_lettered(error: Exception) -> None:
    harness = Harness()
    work, calls = failing(1, error)
    await harness.run(work)
    assert calls == [2] and harness.letters == [] and harness.announced == []


async def test_a_failure_that_stays_is_dead_lettered_after_three_attempts_counting_earlier_ones() -> None:
    harness = Harness()
    work, calls = failing(float("inf"), Transient("still restarting"))
    await harness.run(work, Message(headers=[(ATTEMPTS_HEADER, b"3")]))  # re-driven once already
    [letter] = harness.letters
    assert calls == [3] and letter.attempts == 6 and "still restarting" in letter.error
    assert (letter.topic, letter.partition, letter.offset, letter.key) == ("text.original", 2, 118, b"room")


async def test_a_drop_is_announced_and_never_retried() -> None:
    harness = Harness()
    work, calls = failing(1, Dropped("stale", dropped_announcement()))
    await harness.run(work)
    assert calls == [1] and harness.letters == [] and [a.reason for a in harness.announced] == ["error"]  # type: ignore[attr-defined]


async def test_a_declared_failure_is_announced_and_dead_lettered_at_once() -> None:
    harness = Harness()
    work, calls = failing(1, Failed(RuntimeError("recognizer kept failing"), dropped_announcement()))
    await harness.run(work)
    assert calls == [1] and len(harness.announced) == 1
    [letter] = harness.letters
    assert letter.attempts == 1 and "recognizer kept failing" in letter.error


async def test_a_fatal_failure_ends_the_process() -> None:
    harness = Harness()
    work, calls = failing(1, Fatal("the model files are gone"))
    with pytest.raises(Exited) as exited:
        await harness.run(work)
    assert exited.value.args == (EXIT_FATAL,) and calls == [1] and harness.letters == []
