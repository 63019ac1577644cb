"""Speech synthesis: every final translation spoken in its language, streamed sentence by sentence.

Each sentence leaves as soon as it is synthesized, cut into chunks of at most
``CHUNK_SAMPLES``; an empty chunk with ``is_last`` closes the utterance.
Partial translations are never spoken.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from agents.engines.protocols import Float32Audio, SpeechSynthesizer
from schemas import SAMPLE_RATE, SynthesizedAudio, Translation, UtteranceDropped
from streams.stage import Dropped, Stateless

CHUNK_SAMPLES = SAMPLE_RATE  # one second: 32,000 bytes of PCM, the protocol's largest frame


def to_pcm16(audio: Float32Audio) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class Synthesize(Stateless):
    def __init__(self, synthesizer: SpeechSynthesizer, stale_after_s: float = 10.0) -> None:
        self._synthesizer = synthesizer
        self._stale_after_s = stale_after_s

    def warm_up(self) -> None:
        for language in ("en", "es"):
            if self._synthesizer.supports(language):
                list(self._synthesizer.synthesize("Good morning.", language))

    def process(self, translation: Translation, received_at: float) -> Iterator[SynthesizedAudio]:
        if not translation.is_final:
            return
        if received_at - translation.speech_ended_at > self._stale_after_s:
            raise Dropped("stale", UtteranceDropped.of(translation, "tts", "stale"))
        if not self._synthesizer.supports(translation.language):
            raise Dropped("no_voice")
        index = 0
        for sentence in self._synthesizer.synthesize(translation.text, translation.language):
            for start in range(0, len(sentence), CHUNK_SAMPLES):
                yield self._chunk(translation, index, to_pcm16(sentence[start : start + CHUNK_SAMPLES]))
                index += 1
        yield self._chunk(translation, index, b"", is_last=True)

    @staticmethod
    def _chunk(translation: Translation, index: int, pcm: bytes, is_last: bool = False) -> SynthesizedAudio:
        return SynthesizedAudio(
            room_id=translation.room_id,
            timings=translation.timings,
            speaker_id=translation.speaker_id,
            utterance_id=translation.utterance_id,
            language=translation.language,
            chunk_index=index,
            is_last=is_last,
            pcm=pcm,
            speech_ended_at=translation.speech_ended_at,
        )
