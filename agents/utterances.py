"""One speaker's audio as speech to text tracks it: the connection's stream, and the utterance
open in it (its windows, the VAD's evidence, its hypotheses). State only: :mod:`agents.stt` moves it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agents.engines.protocols import Float32Audio, VadStream
from agents.hypotheses import LocalAgreement, VoiceEvidence
from schemas import StageTiming

TAIL_WINDOWS = 3
"""Silent windows kept after speech in what is recognized (about 0.1 s): words end softly."""


@dataclass
class Utterance:
    first_sequence: int
    start_sample: int
    windows: list[Float32Audio]
    window_energy: list[float]
    voiced_windows: int = 0
    voiced_probability: float = 0.0
    """The VAD's speech probabilities over the voiced windows, summed."""
    silent_run: int = 0
    first_voiced_at: float = 0.0
    last_voiced_at: float = 0.0
    recognized_windows: int = 0
    """Length (in windows) when the last hypothesis was made."""
    recognized_at: float = 0.0
    """When the last partial hypothesis was made (or the utterance opened): how long its speaker has waited."""
    speculation: tuple[int, str] | None = None
    """(audio end in windows, cleaned hypothesis) recognized early in a pause, ready to become the final."""
    stale: bool = False
    """Some of its audio arrived past the stale budget: it is announced as dropped, not recognized."""
    revision: int = 0
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    said: list[str] = field(default_factory=list)
    """Its final's words, once it has one."""
    shown_tentative: str = ""
    """The tentative words of the last partial sent: a partial goes out when they or the committed change."""

    def audio(self, end: int | None = None, start: int = 0) -> Float32Audio:
        return np.concatenate(self.windows[start:end])

    def silence_s(self, window_s: float) -> float:
        """How long it has been quiet since its last voiced window: a pause, or the hangover's end."""
        return self.silent_run * window_s

    def voice(self, window_s: float) -> VoiceEvidence:
        return VoiceEvidence(self.voiced_windows * window_s, self.voiced_probability / max(1, self.voiced_windows))

    @property
    def final_ready(self) -> bool:
        """In a pause, and recognized through its end: a final once the hangover is over."""
        return self.silent_run > 0 and self.speculation is not None and self.speculation[0] == self.voiced_end

    @property
    def voiced_end(self) -> int:
        """Where the speech ends, in windows: trailing silence beyond a short tail is only the hangover."""
        return len(self.windows) - max(0, self.silent_run - TAIL_WINDOWS)


@dataclass
class SpeakerStream:
    """One participant connection's audio, as far as the recognizer has heard it."""

    vad: VadStream
    room_id: str
    session_id: str
    speaker_id: str
    language: str
    timings: tuple[StageTiming, ...] = ()
    """Timings of the latest frame: what this stream's next transcript carries on."""
    last_sequence: int = -1
    finished_through: int = -1
    """The last frame when an utterance last finished: every frame up to it is fully worked on."""
    last_frame_at: float = 0.0
    samples_seen: int = 0
    leftover: Float32Audio = field(default_factory=lambda: np.zeros(0, np.float32))
    pre_roll: deque[Float32Audio] = field(default_factory=deque)
    utterance: Utterance | None = None
