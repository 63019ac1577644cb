"""The gateway's store of file transcriptions: finished transcripts (from the compacted
``transcripts`` topic, read by the egress from its start) and the requests waiting for updates."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from schemas import TranscriptionStatus, TranscriptionUpdate


def result(update: TranscriptionUpdate) -> dict[str, Any]:
    segments = [s.model_dump() for s in update.segments]
    return {"id": update.transcription_id, "language": update.language, "segments": segments, "text": update.text}


class Transcriptions:
    """The gateway's side: finished transcripts, and the requests waiting for updates."""

    def __init__(self) -> None:
        self.done: dict[str, TranscriptionUpdate] = {}
        self.running = 0
        self._waiting: dict[str, set[asyncio.Queue[TranscriptionUpdate]]] = {}

    def on_update(self, update: TranscriptionUpdate) -> None:
        if update.status is TranscriptionStatus.DONE:
            self.done[update.transcription_id] = update
        for queue in self._waiting.get(update.transcription_id, ()):
            queue.put_nowait(update)

    @contextlib.contextmanager
    def waiting(self, transcription_id: str) -> Any:
        queue: asyncio.Queue[TranscriptionUpdate] = asyncio.Queue()
        self._waiting.setdefault(transcription_id, set()).add(queue)
        self.running += 1
        try:
            yield queue
        finally:
            self.running -= 1
            self._waiting[transcription_id].discard(queue)
            if not self._waiting[transcription_id]:
                del self._waiting[transcription_id]
