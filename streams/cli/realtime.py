"""A meeting client's microphone, as the benchmarks play it: PCM sent in 100 ms frames, each when its
last sample would have been captured, and the time each frame actually went out.

A sample's time is when its frame went out, not when it was due: a client held up (a busy machine
blocking its event loop) sends late, then what it owes at once, and the gateway stamps what it
receives. Measuring from the schedule read a stalled client as lost utterances (bench load) or late
words (bench captions).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from schemas import SAMPLE_RATE
from web.ingest import BYTES_PER_SECOND

FRAME_S = 0.1
FRAME_BYTES = int(SAMPLE_RATE * FRAME_S) * 2


class AudioSocket(Protocol):
    async def send_bytes(self, data: bytes) -> None: ...


@dataclass
class SentAudio:
    """What went out so far: where each frame ended in the audio (bytes) and when it was sent."""

    frame_ends: list[int] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)

    def has(self, offset: int) -> bool:
        """The byte at ``offset`` has gone out."""
        return bool(self.frame_ends) and offset < self.frame_ends[-1]

    def started_at(self, offset: int) -> float:
        """Wall-clock time of the sample that begins at byte ``offset``, as sent (see :meth:`has`)."""
        frame = bisect.bisect_right(self.frame_ends, offset)  # the one holding it
        return self.sent_at[frame] - (self.frame_ends[frame] - offset) / BYTES_PER_SECOND

    def ended_at(self, offset: int) -> float:
        """Wall-clock time of the end of the audio before byte ``offset``: its last sample's end."""
        return self.started_at(offset - 2) + 2 / BYTES_PER_SECOND

    def most_behind_s(self) -> float:
        """How far behind real time (from the first frame) the client sent at worst: its own delay,
        which the figures measured from what it sent leave out."""
        if not self.sent_at:
            return 0.0
        began = self.sent_at[0] - self.frame_ends[0] / BYTES_PER_SECOND
        return max(at - (began + end / BYTES_PER_SECOND) for at, end in zip(self.sent_at, self.frame_ends, strict=True))


async def play(ws: AudioSocket, pcm: bytes, on_sent: Callable[[SentAudio], None] = lambda _: None) -> SentAudio:
    """Send ``pcm`` in real time from now; ``on_sent`` after each frame, with what has gone out."""
    sent = SentAudio()
    started = time.time()
    for offset in range(0, len(pcm), FRAME_BYTES):
        frame = pcm[offset : offset + FRAME_BYTES]
        await asyncio.sleep(max(0.0, started + (offset + len(frame)) / BYTES_PER_SECOND - time.time()))
        await ws.send_bytes(frame)
        sent.frame_ends.append(offset + len(frame))
        sent.sent_at.append(time.time())
        on_sent(sent)
    return sent
