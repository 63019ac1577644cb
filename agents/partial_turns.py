"""Whose partial a shared speech-to-text worker decodes next.

One worker recognizes every speaker whose room hashes to its partitions, one decode at a time
(0.1–0.2 s each on a CPU). Partials are a luxury, and these rules hand them out: finals first, then
whoever has waited longest, so that a worker that cannot keep up slows every speaker's captions
alike instead of freezing one speaker's. Pure functions over :mod:`agents.utterances`' state.
"""

from __future__ import annotations

from collections.abc import Iterable

from agents.utterances import SpeakerStream, Utterance

PATIENCE_INTERVALS = 2
"""How many partial intervals a speaker due a partial leaves its turn to others who waited longer: a
speaker whose frames keep coming late gets no partial, and would otherwise hold back everyone else's."""


def partial_due(utterance: Utterance, window_s: float, interval_s: float) -> bool:
    """``interval_s`` of new audio since its last hypothesis, in speech (a pause may end in a final)."""
    if utterance.silent_run or utterance.stale:
        return False
    return (len(utterance.windows) - utterance.recognized_windows) * window_s >= interval_s


def partial_turn(
    stream: SpeakerStream, streams: Iterable[SpeakerStream], now: float, window_s: float, interval_s: float
) -> bool:
    """Whether ``stream``'s utterance, due a partial, gets it decoded now, of all the worker's ``streams``.

    - Not while another speaker's final is recognized and waits only for the hangover to end: a
      partial decoded first would make that final wait too.
    - Not while another speaker due a partial has waited longer for one. Without this, when decodes
      take all of the worker's time, whichever frame comes first after it catches up gets the next
      decode, and one speaker's captions stood still for seconds (the tests show 4.4 s).
    """
    utterance = stream.utterance
    assert utterance is not None
    others = [other.utterance for other in streams if other is not stream and other.utterance is not None]
    if any(other.final_ready for other in others):
        return False
    if now - utterance.recognized_at >= PATIENCE_INTERVALS * interval_s:
        return True
    return not any(
        other.recognized_at < utterance.recognized_at and partial_due(other, window_s, interval_s) for other in others
    )
