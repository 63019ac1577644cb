"""espeak-ng (formant synthesis): the voice of last resort for any language without a neural one."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator

import numpy as np
import soundfile
import soxr

from agents.engines.protocols import Float32Audio
from agents.engines.sentences import split_sentences
from schemas import SAMPLE_RATE


def espeak_languages(executable: str = "espeak-ng") -> frozenset[str]:
    """The ISO 639-1 languages espeak-ng has a voice for (empty when it is not installed)."""
    path = shutil.which(executable)
    if path is None:
        return frozenset()
    listing = subprocess.run([path, "--voices"], capture_output=True, text=True, check=True).stdout
    return frozenset(line.split()[1].split("-")[0] for line in listing.splitlines()[1:] if line.split())


class EspeakSynthesizer:
    name = "espeak-ng"

    def __init__(self, executable: str = "espeak-ng") -> None:
        path = shutil.which(executable)
        if path is None:
            raise FileNotFoundError(f"{executable} is not installed (Debian package espeak-ng)")
        self._executable = path
        self._languages = espeak_languages(path)

    def supports(self, language: str) -> bool:
        return language in self._languages

    def synthesize(self, text: str, language: str) -> Iterator[Float32Audio]:
        for sentence in split_sentences(text, language):
            wav = subprocess.run(
                [self._executable, "-v", language, "--stdout", sentence], capture_output=True, check=True
            ).stdout
            audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
            yield soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
