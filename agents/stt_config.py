"""How the speech-to-text transform (:mod:`agents.stt`) segments and recognizes: its thresholds and
intervals, most of them taken from :class:`~streams.settings.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from streams.settings import Settings


def _default(setting: str) -> float:
    """A setting's documented default: what `up` runs with is what a bare :class:`SttConfig` means."""
    return float(Settings.model_fields[setting].default)


@dataclass(frozen=True)
class SttConfig:
    vad_threshold: float = _default("vad_threshold")
    hangover_s: float = _default("vad_hangover_ms") / 1000
    max_utterance_s: float = _default("max_utterance_s")
    partial_interval_s: float = _default("partial_interval_s")
    stale_after_s: float = _default("stale_after_s")
    pre_roll_s: float = 0.2
    speculate_after_s: float = 0.2
    """Pause after which the final is recognized ahead of the hangover's end."""
    min_speech_s: float = 0.15
    """Voiced time below which an utterance is a click, not speech. A quick "No." (espeak-ng at 230 words
    a minute) is 0.2 s of voice: what is longer than a click goes to the recognizer, whose evidence
    (and the VAD's) then judges it."""
    idle_close_s: float = 3.0
    """An utterance whose speaker sent nothing for this long (a vanished client) is closed."""
    idle_evict_s: float = 120.0
    """A speaker who sent nothing for this long is forgotten."""
    partial_window_s: float = 10.0
    """Most audio a partial hypothesis is made of: the utterance's last seconds (see the module's doc)."""
    partial_max_lag_s: float = 0.15
    """A frame taken this long after its last sample was captured means the stage is behind: no partial.
    Idle, frames are taken within 0.1 s. Measured with ``dragoman bench load`` at 6 English rooms, while
    Apertium still cost 0.3 s of CPU per caption: at 0.3 s the worker was already far behind (final p90
    1.0–1.1 s); at 0.15 s, 0.87 s."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SttConfig:
        return cls(
            vad_threshold=settings.vad_threshold,
            hangover_s=settings.vad_hangover_ms / 1000,
            max_utterance_s=settings.max_utterance_s,
            partial_interval_s=settings.partial_interval_s,
            stale_after_s=settings.stale_after_s,
        )
