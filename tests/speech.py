"""Real recorded speech for tests: Debian's asterisk-core-sounds prompts, resampled to 16 kHz."""

from __future__ import annotations

from agents.bench import word_error_rate
from agents.recordings import prompt_audio, prompt_transcripts
from agents.tts import to_pcm16

__all__ = ["PROMPTS", "prompt_pcm", "prompt_transcripts", "silence", "word_error_rate"]

PROMPTS = {
    "es": ["agent-alreadyon", "agent-incorrect", "agent-newlocation", "auth-incorrect"],
    "en": ["agent-alreadyon", "agent-incorrect", "agent-newlocation", "auth-incorrect"],
}


def prompt_pcm(lang: str, name: str) -> bytes:
    """The prompt as 16 kHz mono int16 little-endian PCM."""
    return to_pcm16(prompt_audio(lang, name))


def silence(seconds: float) -> bytes:
    return bytes(int(16_000 * seconds) * 2)
