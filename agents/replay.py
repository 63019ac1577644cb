"""The stage transforms chained in one process, for ``dragoman replay reprocess``.

The same :class:`~agents.stt.SpeechToText`, :class:`~agents.translate.Translate` and
:class:`~agents.tts.Synthesize` that the live workers run, fed a recording instead of a
socket. Time is the recording's own: each record is handed over at the moment it would have
arrived live (a frame when its last sample was captured, a transcript when its speech ended),
so the stale rules see a meeting in real time however fast the replay runs. Partial captions
are previews for people listening live, so a replay makes finals only.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterator
from typing import TypeVar

from agents.stt import SpeechToText
from agents.stt_config import SttConfig
from agents.translate import Translate, TranslateConfig
from agents.tts import Synthesize
from schemas import SAMPLE_RATE, AudioFrame, Envelope, Transcript
from streams.settings import Settings
from streams.stage import Dropped

REPLAY_STAGES = ("stt", "translate", "tts")
EnvelopeT = TypeVar("EnvelopeT", bound=Envelope)


class Reprocess:
    """:class:`~streams.replay.ReplayPipeline` over the real transforms; a stage left out is None."""

    def __init__(self, stt: SpeechToText | None, translate: Translate | None, tts: Synthesize | None) -> None:
        self._stt, self._translate, self._tts = stt, translate, tts
        self.dropped: Counter[str] = Counter()

    def feed(self, record: AudioFrame | Transcript) -> Iterator[Envelope]:
        if not isinstance(record, AudioFrame):
            yield from self._translated(record)
        elif self._stt is None:
            raise ValueError("audio needs the stt stage")
        else:
            arrived_at = record.captured_at + len(record.pcm) / 2 / SAMPLE_RATE
            yield from self._recognized(self._stt.process(record, arrived_at))

    def close(self) -> Iterator[Envelope]:
        if self._stt is not None:
            yield from self._recognized(iter(self._stt.expire(math.inf)))

    def _recognized(self, outputs: Iterator[Envelope]) -> Iterator[Envelope]:
        for output in self._guarded(outputs):
            yield output
            if isinstance(output, Transcript) and output.is_final:
                yield from self._translated(output)

    def _translated(self, final: Transcript) -> Iterator[Envelope]:
        if self._translate is None:
            return
        for translation in self._guarded(self._translate.process(final, final.speech_ended_at)):
            yield translation
            if self._tts is not None:
                yield from self._guarded(self._tts.process(translation, translation.speech_ended_at))

    def _guarded(self, outputs: Iterator[EnvelopeT]) -> Iterator[EnvelopeT]:
        """A transform's outputs; an input it drops on purpose (a duplicate frame, a language with
        no voice) is counted, as the live stage counts it."""
        try:
            yield from outputs
        except Dropped as drop:
            self.dropped[drop.reason] += 1


def build(settings: Settings, stages: tuple[str, ...], languages: tuple[str, ...]) -> Reprocess:
    """The transforms ``stages`` names, with the models the settings name, translating into ``languages``."""
    from agents import models

    stt = translate = tts = None
    if "stt" in stages:
        # No partials: nobody is listening live.
        config = dataclasses.replace(SttConfig.from_settings(settings), partial_interval_s=math.inf)
        stt = SpeechToText(models.load_recognizer(settings), models.load_vad(settings), config)
    if "translate" in stages:
        targets = set(languages)
        translate = Translate(
            models.load_translator(settings), lambda _room: targets, TranslateConfig.from_settings(settings)
        )
    if "tts" in stages:
        tts = Synthesize(models.load_synthesizer(settings), settings.stale_after_s)
    return Reprocess(stt, translate, tts)
