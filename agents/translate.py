"""Translation: one transcript in, one translation per listening language present in the room.

Finals are always translated. Partials are translated at most once per
``partial_interval_s`` per utterance: a translated partial is a preview that
may be revised, and translating every partial would starve the finals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agents.engines.protocols import Translator
from schemas import Transcript, Translation, UtteranceDropped
from streams.settings import Settings
from streams.stage import Dropped, Stateless


@dataclass(frozen=True)
class TranslateConfig:
    partial_interval_s: float = 0.8
    stale_after_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TranslateConfig:
        return cls(partial_interval_s=settings.partial_interval_s, stale_after_s=settings.stale_after_s)


class Translate(Stateless):
    def __init__(
        self,
        translator: Translator,
        listening_languages: Callable[[str], set[str]],
        config: TranslateConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._translator = translator
        self._listening_languages = listening_languages
        self._config = config
        self._clock = clock
        self._last_partial: dict[str, tuple[float, str]] = {}
        """utterance id → when its last partial was translated, and its text."""

    def warm_up(self) -> None:
        self._translator.translate("Good morning.", "en", ["es"])

    def process(self, transcript: Transcript, received_at: float) -> Iterator[Translation]:
        targets = sorted(self._listening_languages(transcript.room_id) - {transcript.language})
        if not targets:
            return
        if received_at - transcript.speech_ended_at > self._config.stale_after_s:
            # A final's listeners are told; a stale partial is simply superseded by its final.
            drops = [transcript.model_copy(update={"language": t}) for t in targets] if transcript.is_final else []
            raise Dropped("stale", *(UtteranceDropped.of(d, "translate", "stale") for d in drops))
        now = self._clock()
        if transcript.is_final:
            self._last_partial.pop(transcript.utterance_id, None)
        else:
            # Only confirmed words are translated: a partial that changed only its tentative tail
            # would translate to the same preview.
            last_at, last_text = self._last_partial.get(transcript.utterance_id, (None, ""))
            if last_at is not None and now - last_at < self._config.partial_interval_s:
                raise Dropped("rate_limited")
            if not transcript.text or transcript.text == last_text:
                raise Dropped("unchanged")
            self._last_partial[transcript.utterance_id] = (now, transcript.text)
        # Targets nothing translates into from this language come back absent: their listeners were told
        # (web.routing) and get nothing rather than nonsense.
        texts = self._translator.translate(transcript.text, transcript.language, targets)
        common = transcript.model_dump(exclude={"language", "text", "tentative", "schema_version"})
        for target in sorted(texts):
            yield Translation(
                **common,
                language=target,
                text=texts[target],
                source_language=transcript.language,
                target_language=target,
            )
