"""Real recorded speech for tests: Debian's asterisk-core-sounds prompts, resampled to 16 kHz."""

from __future__ import annotations

from collections.abc import Iterator

from agents.bench import word_error_rate
from agents.recordings import prompt_audio, prompt_transcripts
from agents.tts import to_pcm16
from schemas import AudioFrame

__all__ = ["PROMPTS", "frames", "prompt_pcm", "prompt_transcripts", "silence", "word_error_rate"]

PROMPTS = {
    "es": ["agent-alreadyon", "agent-incorrect", "agent-newlocation", "auth-incorrect"],
    "en": ["agent-alreadyon", "agent-incorrect", "agent-newlocation", "auth-incorrect"],
}


def prompt_pcm(lang: str, name: str) -> bytes:
    """The prompt as 16 kHz mono int16 little-endian PCM."""
    return to_pcm16(prompt_audio(lang, name))


def silence(seconds: float) -> bytes:
    return bytes(int(16_000 * seconds) * 2)


FRAME_BYTES = 3_200
"""100 ms of PCM: what the gateway groups a client's audio into (``DRAGOMAN_FRAME_GROUP_MS``)."""


def frames(
    pcm: bytes, start_at: float = 1000.0, session: str = "s1", frame_bytes: int = FRAME_BYTES
) -> Iterator[AudioFrame]:
    """``pcm`` as one speaker's audio.raw messages, captured in real time from ``start_at``."""
    for index, offset in enumerate(range(0, len(pcm), frame_bytes)):
        yield AudioFrame(
            room_id="room", session_id=session, speaker_id="u1", sequence_number=index,
            captured_at=start_at + offset / 32_000, language="en", pcm=pcm[offset : offset + frame_bytes],
        )  # fmt: skip
