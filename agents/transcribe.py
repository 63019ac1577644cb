"""File transcription: uploaded recordings, piece by piece, through WhisperX's batched pipeline.

The gateway cuts an upload into pieces of at most ``TranscriptionRequest.PIECE_S``
seconds on ``transcription.requests``; this stage transcribes each piece as it
comes and publishes a progress snapshot after it, and ``done`` after the last,
to ``transcripts`` (compacted: the store of finished transcripts). Off the
live path: its own consumer group and process, so files never delay captions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

import numpy as np

from agents.engines.protocols import FileTranscriber
from schemas import Segment, TranscriptionRequest, TranscriptionStatus, TranscriptionUpdate

log = logging.getLogger(__name__)

ABANDONED_AFTER_S = 600.0
"""A file whose next piece has not come for this long is given up (``upstream_error``)."""


@dataclass
class _File:
    language: str | None
    total_s: float
    segments: list[Segment] = field(default_factory=list)
    next_piece: int = 0
    last_seen: float = field(default_factory=time.time)


class TranscribeFiles:
    """A :class:`StageTransform`: a file's pieces stay unacknowledged until its ``done``."""

    def __init__(self, transcriber: FileTranscriber) -> None:
        self._transcriber = transcriber
        self._files: dict[Hashable, _File] = {}

    def stream_key(self, request: TranscriptionRequest) -> Hashable:
        return request.transcription_id

    def is_open(self, key: Hashable) -> bool:
        return key in self._files

    def warm_up(self) -> None:
        return None  # files are not real time: the first one may pay for the models' first call

    def process(self, request: TranscriptionRequest, received_at: float) -> Iterator[TranscriptionUpdate]:
        file = self._files.setdefault(request.transcription_id, _File(request.language, request.total_s))
        if request.piece_index != file.next_piece:  # a replayed piece already done, or one out of order
            return
        file.next_piece += 1
        file.last_seen = received_at
        audio = np.frombuffer(request.pcm, dtype="<i2").astype(np.float32) / 32768.0
        try:
            found, language = self._transcriber.transcribe_file(audio, file.language)
        except Exception as exc:
            log.exception("transcription %s failed", request.transcription_id)
            del self._files[request.transcription_id]
            yield self._update(request, file, TranscriptionStatus.ERROR, code="upstream_error", detail=repr(exc))
            return
        file.language = file.language or language  # the first piece's detection holds for the file
        file.segments += [Segment(start=s + request.offset_s, end=e + request.offset_s, text=t) for s, e, t in found]
        if file.next_piece < request.pieces:
            yield self._update(request, file, TranscriptionStatus.PROGRESS)
        else:
            del self._files[request.transcription_id]
            yield self._update(request, file, TranscriptionStatus.DONE)

    def expire(self, now: float) -> list[TranscriptionUpdate]:
        abandoned = [key for key, file in self._files.items() if now - file.last_seen > ABANDONED_AFTER_S]
        updates = []
        for key in abandoned:
            file = self._files.pop(key)
            updates.append(
                TranscriptionUpdate(
                    transcription_id=str(key),
                    status=TranscriptionStatus.ERROR,
                    language=file.language,
                    error_code="upstream_error",
                    detail="the upload stopped arriving",
                )
            )
        return updates

    @staticmethod
    def _update(
        request: TranscriptionRequest,
        file: _File,
        status: TranscriptionStatus,
        code: str | None = None,
        detail: str | None = None,
    ) -> TranscriptionUpdate:
        return TranscriptionUpdate(
            timings=request.timings,
            transcription_id=request.transcription_id,
            status=status,
            language=file.language,
            segments=tuple(file.segments),
            current_time=min(request.total_s, request.offset_s + len(request.pcm) / 2 / 16_000),
            total_time=request.total_s,
            error_code=code,
            detail=detail,
        )
