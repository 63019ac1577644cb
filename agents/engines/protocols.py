"""The narrow interfaces every model engine implements.

Stages depend on these and nothing else of an engine, so tests drive a stage
with a fake and production loads a real model behind the same four calls.
All calls are blocking: stages run them in a thread pool, never on the loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Float32Audio = npt.NDArray[np.float32]
"""Mono samples in [-1, 1] at 16 kHz: what every engine takes and gives."""


class VadStream(Protocol):
    """One speaker's voice-activity state (models like Silero keep recurrent state)."""

    def speech_probability(self, window: Float32Audio) -> float:
        """Probability of speech in exactly one window of ``window_samples`` samples."""
        ...


class VoiceActivityDetector(Protocol):
    window_samples: int

    def stream(self) -> VadStream:
        """A fresh, independent state for one speaker."""
        ...


@dataclass(frozen=True)
class Recognition:
    """What a recognizer heard, and its own evidence that it heard speech at all."""

    text: str
    no_speech_prob: float = 0.0
    """The decoder's probability that the audio holds no speech (Whisper's <|nospeech|> token)."""
    avg_logprob: float = 0.0
    """Mean log-probability of the tokens it wrote: how sure it was of them."""


class SpeechRecognizer(Protocol):
    name: str

    def supports(self, language: str) -> bool: ...

    def transcribe(self, audio: Float32Audio, language: str) -> Recognition:
        """What is spoken in ``audio`` (one utterance), in ``language`` (ISO 639-1)."""
        ...


class FileTranscriber(Protocol):
    def transcribe_file(self, audio: Float32Audio, language: str | None) -> tuple[list[tuple[float, float, str]], str]:
        """(start, end, text) segments of a whole recording, and its language (detected when None)."""
        ...


class Translator(Protocol):
    name: str

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        """``text`` in every target language, in one batched call."""
        ...


class SpeechSynthesizer(Protocol):
    name: str

    def supports(self, language: str) -> bool: ...

    def synthesize(self, text: str, language: str) -> Iterator[Float32Audio]:
        """16 kHz audio of ``text``, yielded piece by piece (a sentence at a time) as it is made."""
        ...
