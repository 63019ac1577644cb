"""Client audio → ``audio.raw`` messages.

Clients send 10 ms to 1 s of PCM per frame; the pipeline moves about 100 ms
per message (``Settings.frame_group_ms``) because Faust's throughput is a few
hundred messages per second per core, and 20 ms frames would be 50 per speaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from schemas import SAMPLE_RATE, AudioFrame

BYTES_PER_SECOND = SAMPLE_RATE * 2
MAX_FRAME_BYTES = 32_000
"""One second of PCM: the largest client frame (PROTOCOL.md); larger closes the socket with 1009."""


class BadFrame(ValueError):
    """A client frame the protocol does not allow (answered with ``bad_frame``; the connection stays)."""


def check_frame(pcm: bytes) -> None:
    if not pcm:
        raise BadFrame("empty audio frame")
    if len(pcm) % 2:
        raise BadFrame(f"odd byte count {len(pcm)}: PCM is 16-bit samples")
    if len(pcm) > MAX_FRAME_BYTES:
        raise BadFrame(f"frame of {len(pcm)} bytes is over {MAX_FRAME_BYTES}")


class FrameGrouper:
    """Groups one speaker's PCM into ``AudioFrame`` messages of about ``group_ms``, numbered from 0."""

    def __init__(
        self,
        room_id: str,
        session_id: str,
        speaker_id: str,
        group_ms: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._room_id, self._session_id, self._speaker_id = room_id, session_id, speaker_id
        self._group_bytes = BYTES_PER_SECOND * group_ms // 1000
        self._clock = clock
        self._buffer = bytearray()
        self._started_at = 0.0
        self._captured_at = 0.0
        self._next_sequence = 0

    def push(self, pcm: bytes, language: str) -> list[AudioFrame]:
        """Add a client frame; returns the messages now complete."""
        check_frame(pcm)
        if not self._buffer:
            self._started_at = self._clock()
            # The frame arrives when its last sample was captured.
            self._captured_at = self._started_at - len(pcm) / BYTES_PER_SECOND
        self._buffer += pcm
        return [self._emit(language)] if len(self._buffer) >= self._group_bytes else []

    def flush(self, language: str, end_of_utterance: bool) -> list[AudioFrame]:
        """Send what is buffered now; with ``end_of_utterance``, also the marker that closes the utterance."""
        frames = [self._emit(language)] if self._buffer else []
        if end_of_utterance:
            now = self._clock()
            self._started_at, self._captured_at = now, now
            frames.append(self._emit(language, end_of_utterance=True))
        return frames

    def _emit(self, language: str, end_of_utterance: bool = False) -> AudioFrame:
        frame = AudioFrame(
            room_id=self._room_id,
            session_id=self._session_id,
            speaker_id=self._speaker_id,
            sequence_number=self._next_sequence,
            captured_at=self._captured_at,
            language=language,
            pcm=bytes(self._buffer),
            end_of_utterance=end_of_utterance,
        ).stamped("gateway", self._started_at, self._clock())
        self._next_sequence += 1
        self._buffer.clear()
        return frame
