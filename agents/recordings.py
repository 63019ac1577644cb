"""Recorded speech for benches and tests: Debian's Asterisk prompts (8 kHz telephony recordings,
resampled to 16 kHz) and their transcripts, the parallel prompts said in every bench language, a
continuous reading made of prompts, and the word timings of a recording."""

from __future__ import annotations

import gzip
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile
import soxr

from agents.engines.protocols import Float32Audio, SpeechSynthesizer
from schemas import SAMPLE_RATE

if TYPE_CHECKING:
    from agents.engines.whisper import WhisperRecognizer

SOUNDS = Path("/usr/share/asterisk/sounds")
TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"


@cache
def prompt_transcripts(lang: str) -> dict[str, str]:
    """Asterisk's prompt transcripts (Debian asterisk-core-sounds-<lang>): name → what is said."""
    text = gzip.decompress(Path(TRANSCRIPTS.format(lang=lang)).read_bytes()).decode("utf-8", "replace")
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith(";"))
    return {name.strip(): re.sub(r"\s+", " ", said).strip() for name, said in pairs}


def prompt_audio(lang: str, name: str) -> Float32Audio:
    """A prompt (8 kHz) resampled to 16 kHz float32."""
    audio, rate = soundfile.read(SOUNDS / lang / f"{name}.wav", dtype="float32")
    return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)


def spoken_prompts(lang: str, count: int) -> list[str]:
    """The first ``count`` prompts (by name) whose transcript is speech, not a tone or a note."""
    names = sorted(
        name
        for name, said in prompt_transcripts(lang).items()
        if len(said.split()) >= 3 and "[" not in said and (SOUNDS / lang / f"{name}.wav").exists()
    )
    return names[:count]


PROMPTS_FILE = Path(str(resources.files("agents").joinpath("data", "prompts.json")))
RECORDED = ("en", "es", "fr", "it")
"""Languages whose prompts are recordings; the others' speakers are their voice reading the references."""


@cache
def continuous_reading(lang: str, seconds: float, breath_s: float = 0.25) -> tuple[Float32Audio, list[str]]:
    """Recorded prompts read one after another, ``breath_s`` apart, until ``seconds`` are filled; the
    audio and what each prompt says. A breath shorter than the VAD's hangover makes the utterances run
    long, as a person reading aloud does; a pause longer than it makes each prompt its own utterance."""
    pieces: list[Float32Audio] = []
    said: list[str] = []
    breath = np.zeros(int(breath_s * SAMPLE_RATE), np.float32)
    for name in spoken_prompts(lang, 200):
        audio = prompt_audio(lang, name)
        loud = np.flatnonzero(np.abs(audio) > 0.02 * np.abs(audio).max())
        spoken = audio[loud[0] : loud[-1] + 1]
        if sum(len(p) for p in pieces) + len(spoken) > seconds * SAMPLE_RATE:
            continue  # too long for what is left: a shorter prompt may fit
        pieces += [spoken, breath]
        said.append(prompt_transcripts(lang)[name])
    return np.concatenate(pieces), said


def word_timings(recognizer: WhisperRecognizer, audio: Float32Audio, lang: str) -> list[tuple[float, float, str]]:
    """(start, end, word) of every word of a recording, offline: faster-whisper's own word timestamps
    (cross-attention alignment), from the model streaming recognition uses for ``lang``."""
    segments, _ = recognizer.pipeline(lang).model.transcribe(audio, language=lang, word_timestamps=True)
    return [(float(w.start), float(w.end), str(w.word).strip()) for segment in segments for w in segment.words or ()]


def parallel_prompts() -> tuple[list[str], dict[str, dict[str, str]]]:
    """The prompt names said in every language of the multilingual bench, and language → name → what is
    said: Asterisk's transcripts where it recorded the language, the project's own references elsewhere."""
    data = json.loads(PROMPTS_FILE.read_text())
    names: list[str] = data["names"]
    said = {lang: {n: prompt_transcripts(lang)[n] for n in names} for lang in RECORDED}
    said.update({lang: data[lang] for lang in data if lang not in ("about", "names")})
    return names, said


def parallel_speech(lang: str, name: str, synthesizer: SpeechSynthesizer | None = None) -> Float32Audio:
    """A prompt spoken in ``lang``: its recording, or ``synthesizer`` reading its reference."""
    if lang in RECORDED:
        return prompt_audio(lang, name)
    if synthesizer is None:
        raise ValueError(f"no recording in {lang!r}: give a synthesizer to speak it")
    return np.concatenate(list(synthesizer.synthesize(parallel_prompts()[1][lang][name], lang)))
