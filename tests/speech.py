"""Real recorded speech for tests: Debian's asterisk-core-sounds prompts, resampled to 16 kHz."""

from __future__ import annotations

import gzip
import re
from functools import cache
from pathlib import Path

import numpy as np
import soundfile
import soxr

from agents.stt import normalize_text

SOUNDS = Path("/usr/share/asterisk/sounds")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz")

PROMPTS = {
    "es": ["agent-alreadyon", "agent-incorrect", "agent-newlocation", "auth-incorrect"],
    "en": ["agent-alreadyon", "agent-incorrect", "agent-newlocation", "auth-incorrect"],
}


@cache
def transcripts(lang: str) -> dict[str, str]:
    text = gzip.decompress(Path(str(TRANSCRIPTS).format(lang=lang)).read_bytes()).decode("utf-8", "replace")
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith(";"))
    return {name.strip(): re.sub(r"\s+", " ", said).strip() for name, said in pairs}


def prompt_pcm(lang: str, name: str) -> bytes:
    """The prompt as 16 kHz mono int16 little-endian PCM."""
    audio, rate = soundfile.read(SOUNDS / lang / f"{name}.wav", dtype="float32")
    resampled = soxr.resample(audio, rate, 16_000)
    return (np.clip(resampled, -1, 1) * 32767).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(int(16_000 * seconds) * 2)


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalize_text(r) for r in references], [normalize_text(h) for h in hypotheses]))
