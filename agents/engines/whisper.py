"""Whisper through WhisperX (faster-whisper / CTranslate2 backend), from local model dirs.

Streaming recognition calls faster-whisper's decoder directly on one
utterance; files go through WhisperX's batched pipeline. The models are
loaded with ``whisperx.load_model`` from directories under
``models_dir/whisper`` (see ``dragoman models prepare``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from agents.engines.protocols import Float32Audio

ENGLISH_ONLY_SUFFIX = ".en"


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


class WhisperRecognizer:
    """Multilingual Whisper for every language, and an English-only model for English when given."""

    def __init__(self, multilingual_dir: Path, english_dir: Path | None, device: str, compute_type: str) -> None:
        import whisperx

        self.name = f"whisperx:{multilingual_dir.name}" + (f"+{english_dir.name}" if english_dir else "")
        device = pick_device(device)
        # WhisperX defaults to 4 threads; more threads than cores only adds contention.
        options = {"compute_type": compute_type, "vad_method": "pyannote", "threads": min(4, os.cpu_count() or 1)}
        self._pipelines: dict[str, Any] = {"*": whisperx.load_model(str(multilingual_dir), device, **options)}
        if english_dir is not None:
            self._pipelines["en"] = whisperx.load_model(str(english_dir), device, language="en", **options)
        self._lock = threading.Lock()  # one CTranslate2 model instance decodes one request at a time here

    def supports(self, language: str) -> bool:
        return len(language) == 2

    def pipeline(self, language: str) -> Any:
        """The WhisperX batched pipeline for ``language`` (file transcription uses it)."""
        return self._pipelines.get(language, self._pipelines["*"])

    def transcribe_file(self, audio: Float32Audio, language: str | None) -> tuple[list[tuple[float, float, str]], str]:
        """WhisperX's batched pipeline: its VAD cuts the recording, the pieces are decoded as one batch."""
        pipeline = self.pipeline(language) if language else self._pipelines["*"]
        with self._lock:
            result = pipeline.transcribe(audio, batch_size=8, language=language)
        segments = [(float(s["start"]), float(s["end"]), str(s["text"]).strip()) for s in result["segments"]]
        return segments, str(result.get("language") or language)

    def transcribe(self, audio: Float32Audio, language: str) -> str:
        model = self.pipeline(language).model
        with self._lock:
            segments, _ = model.transcribe(
                audio,
                language=language,
                beam_size=1,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            return " ".join(segment.text.strip() for segment in segments).strip()
