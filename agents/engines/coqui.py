"""coqui-tts voices from local model directories (``model.pth`` + ``config.json``), one per language."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

from agents.engines.protocols import Float32Audio
from agents.engines.sentences import split_sentences
from schemas import SAMPLE_RATE


class CoquiSynthesizer:
    def __init__(self, voices: dict[str, Path]) -> None:
        """``voices``: ISO 639-1 language → a coqui model directory."""
        from TTS.api import TTS

        self.name = "coqui:" + ",".join(sorted(voices))
        self._voices = {
            language: TTS(model_path=str(path / "model.pth"), config_path=str(path / "config.json"), progress_bar=False)
            for language, path in voices.items()
        }
        self._lock = threading.Lock()

    def supports(self, language: str) -> bool:
        return language in self._voices

    def synthesize(self, text: str, language: str) -> Iterator[Float32Audio]:
        voice = self._voices[language]
        rate = voice.synthesizer.output_sample_rate
        for sentence in split_sentences(text, language):
            with self._lock:
                audio = np.asarray(voice.tts(sentence, split_sentences=False), dtype=np.float32)
            yield soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
