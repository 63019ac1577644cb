"""Dead letters: what failed and why, and sending it back after a fix (``dragoman dlq``).

A stage that gives up on a message appends a :class:`~schemas.DeadLetter` to ``pipeline.dlq``.
A re-drive sends the original key and value back to the original topic, with the attempts so far
in the ``dragoman-attempts`` header, and appends the same letter marked ``redriven_at``. If it
fails again, the stage's new letter counts the earlier attempts too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgpack

from schemas import DeadLetter
from streams import history
from streams.topics import DLQ

ATTEMPTS_HEADER = "dragoman-attempts"


def prior_attempts(headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None) -> int:
    """Attempts a message had before it was re-driven (0 for a message never dead-lettered)."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in pairs:
        if name == ATTEMPTS_HEADER:
            return int(value)
    return 0


@dataclass(frozen=True)
class Letter:
    """A dead letter as it stands: its latest entry in the DLQ, and where that entry is."""

    letter: DeadLetter
    dlq_offset: int

    @property
    def status(self) -> str:
        return "redriven" if self.letter.redriven_at is not None else "dead"


async def letters(bootstrap: str, stage: str | None = None, since: float | None = None) -> list[Letter]:
    """Every letter that failed since ``since`` (of ``stage``), oldest first, each as it stands now."""
    latest: dict[str, Letter] = {}
    async for logged in history.read(bootstrap, DLQ, DeadLetter):
        letter = logged.record
        if (stage is None or letter.stage == stage) and (since is None or letter.failed_at >= since):
            latest[letter.letter_id] = Letter(letter, logged.offset)
    return sorted(latest.values(), key=lambda x: x.letter.failed_at)


async def redrive(bootstrap: str, dead: Sequence[DeadLetter]) -> list[DeadLetter]:
    """Send each letter's message back to its topic, then mark the letter re-driven."""
    now = time.time()
    resend = [
        (letter.topic, (letter.key or b"").decode(), letter.value or b"",
         {ATTEMPTS_HEADER: str(letter.attempts).encode()})
        for letter in dead
    ]  # fmt: skip
    await history.append(bootstrap, resend)
    marked = [letter.model_copy(update={"redriven_at": now}) for letter in dead]
    await history.append(bootstrap, [(DLQ.name, letter.letter_id, letter, {}) for letter in marked])
    return marked


def describe(letter: DeadLetter) -> dict[str, object]:
    """A letter for people: its message decoded as far as it decodes (JSON text, or MessagePack with
    PCM shown as its length), else as text."""
    raw = letter.value or b""
    value: object = raw.decode("utf-8", "replace")
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            unpacked = msgpack.unpackb(raw, raw=False)
            if isinstance(unpacked, dict):
                value = {k: f"<{len(v)} bytes>" if isinstance(v, bytes) else v for k, v in unpacked.items()}
        except (ValueError, msgpack.UnpackException):
            pass
    key = (letter.key or b"").decode("utf-8", "replace")
    return {**letter.model_dump(exclude={"value", "key"}), "key": key, "message": value}
