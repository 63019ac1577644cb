"""Piper voices (ONNX VITS) from local ``.onnx`` files; sentence-by-sentence output at 16 kHz."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr
from piper import PiperVoice, SynthesisConfig

from agents.engines.protocols import Float32Audio
from schemas import SAMPLE_RATE

# Piper samples noise at every call; without it the same text always sounds the same (and
# is recognized the same), which is worth more to a listener of translations than variety.
DETERMINISTIC = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)


class PiperSynthesizer:
    def __init__(self, voices: dict[str, Path]) -> None:
        """``voices``: ISO 639-1 language → the voice's ``.onnx`` file (its ``.onnx.json`` beside it)."""
        self.name = "piper:" + ",".join(f"{lang}={path.stem}" for lang, path in sorted(voices.items()))
        self._voices = {language: PiperVoice.load(str(path)) for language, path in voices.items()}

    def supports(self, language: str) -> bool:
        return language in self._voices

    def synthesize(self, text: str, language: str) -> Iterator[Float32Audio]:
        for chunk in self._voices[language].synthesize(text, DETERMINISTIC):  # one chunk per sentence
            audio = chunk.audio_float_array.astype(np.float32)
            yield soxr.resample(audio, chunk.sample_rate, SAMPLE_RATE).astype(np.float32)
