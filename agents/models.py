"""Loading the engines from the models dir (:mod:`agents.weights` puts the weights there), with
their real loading code; a model with random weights is refused for users
(:class:`RandomWeightsRefused`). What the installed engines serve is :func:`describe_languages`.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from agents.engines.protocols import Float32Audio, SpeechSynthesizer
from agents.weights import PIPER_VOICES, coqui_voices, package_file
from streams.languages import ISO_TO_NLLB, LanguageCatalogue, LanguageSupport
from streams.model_paths import ModelPaths, is_test_model
from streams.settings import Settings

if TYPE_CHECKING:  # engines import their heavy libraries; load them only when used
    from agents.engines.nllb import Ct2NllbTranslator, NllbTranslator
    from agents.engines.registry import Directions, TranslatorRegistry
    from agents.engines.silero import SileroVad
    from agents.engines.whisper import WhisperRecognizer

log = logging.getLogger(__name__)


# --- loading the engines -----------------------------------------------------------------


class FallbackSynthesizer:
    """The first synthesizer that has a voice for the language: neural voices first, espeak-ng last."""

    def __init__(self, synthesizers: list[SpeechSynthesizer]) -> None:
        self._synthesizers = synthesizers
        self.name = " > ".join(s.name for s in synthesizers)

    def supports(self, language: str) -> bool:
        return any(s.supports(language) for s in self._synthesizers)

    def synthesize(self, text: str, language: str) -> Iterator[Float32Audio]:
        for synthesizer in self._synthesizers:
            if synthesizer.supports(language):
                return synthesizer.synthesize(text, language)
        raise LookupError(f"no voice for {language!r}")


def load_vad(settings: Settings) -> SileroVad:
    from agents.engines.silero import SileroVad

    return SileroVad(ModelPaths(settings.models_dir).vad)


def load_recognizer(settings: Settings) -> WhisperRecognizer:
    from agents.engines.whisper import WhisperRecognizer

    paths = ModelPaths(settings.models_dir)
    english = paths.whisper(settings.stt_model_en) if settings.stt_model_en else None
    return WhisperRecognizer(
        paths.whisper(settings.stt_model), english, settings.stt_device, settings.stt_compute_type, settings.stt_threads
    )


class RandomWeightsRefused(ValueError):
    """A model with random weights was configured for users: Dragoman serves no one from one."""


QUALITY = package_file("agents", "data", "translation_quality.json")
"""Each route's measured chrF (``dragoman bench languages --write-quality``): what picks the pivots."""


def translation_quality() -> dict[str, float]:
    return {key: float(value) for key, value in json.loads(QUALITY.read_text()).items()}


def _nllb_installed(settings: Settings) -> bool:
    """Whether real NLLB weights are installed; a test model configured for users is refused."""
    paths = ModelPaths(settings.models_dir)
    checkpoint = paths.nllb(settings.nllb_model)
    if is_test_model(checkpoint):
        raise RandomWeightsRefused(
            f"DRAGOMAN_NLLB_MODEL={settings.nllb_model!r} is a test model with random weights: its translations "
            "are nonsense, and Dragoman serves no one from it (leave the setting at its default, or install real "
            "weights: `dragoman models fetch`)"
        )
    return (checkpoint / "config.json").exists() or (paths.nllb_ct2(settings.nllb_model) / "model.bin").exists()


def translation_directions(settings: Settings) -> Directions:
    """Each installed translation engine's name and directions, the preferred first (real NLLB
    weights beat Apertium's rules), read from what is on disk without loading any weights."""
    from agents.engines.apertium import installed_modes

    directions = []
    if _nllb_installed(settings):
        directions.append(("nllb", frozenset(itertools.permutations(ISO_TO_NLLB, 2))))
    if modes := installed_modes():
        directions.append(("apertium", frozenset(modes)))
    return directions


def load_nllb(settings: Settings) -> NllbTranslator | Ct2NllbTranslator:
    """NLLB on CTranslate2 when a converted model is installed (faster), else on ``transformers``."""
    from agents.engines.nllb import Ct2NllbTranslator, NllbTranslator
    from agents.engines.whisper import pick_device

    paths = ModelPaths(settings.models_dir)
    checkpoint, converted = paths.nllb(settings.nllb_model), paths.nllb_ct2(settings.nllb_model)
    if (converted / "model.bin").exists():
        return Ct2NllbTranslator(converted, checkpoint, pick_device(settings.stt_device))
    return NllbTranslator(checkpoint)


def load_translator(settings: Settings) -> TranslatorRegistry:
    """Every real engine installed, behind one registry (see :mod:`agents.engines.registry`)."""
    from agents.engines.apertium import ApertiumTranslator
    from agents.engines.registry import PairTranslator, TranslatorRegistry

    engines: list[PairTranslator] = []
    for name, _ in translation_directions(settings):
        engines.append(
            load_nllb(settings) if name == "nllb" else ApertiumTranslator(max_pipelines=settings.apertium_pipelines)
        )
    return TranslatorRegistry(engines, translation_quality())


MULTILINGUAL_VOCABULARY = 51865
"""Whisper's own test (``is_multilingual``): English-only models have one token fewer."""


def recognized_languages(model_dir: Path) -> frozenset[str]:
    """The languages a CTranslate2 Whisper model hears: an English-only model English alone, a
    multilingual one each language token (``<|fr|>``) its config lists as a language id."""
    vocabulary = (model_dir / "vocabulary.txt").read_text().splitlines()
    if len(vocabulary) < MULTILINGUAL_VOCABULARY:
        return frozenset({"en"})
    ids = json.loads((model_dir / "config.json").read_text())["lang_ids"]
    return frozenset(vocabulary[i].strip("<|>") for i in ids)


def voices(settings: Settings) -> dict[str, str]:
    """Language → the voice that would speak it (as :func:`load_synthesizer` picks), from what is installed."""
    from agents.engines.espeak import espeak_languages

    paths = ModelPaths(settings.models_dir)
    found = {language: "espeak-ng" for language in espeak_languages()}
    found.update({lang: f"piper:{voice}" for lang, voice in PIPER_VOICES.items() if paths.piper(voice).exists()})
    found.update({language: "coqui" for language in coqui_voices(paths)})
    return found


def describe_languages(settings: Settings) -> LanguageCatalogue:
    """What this installation serves, language by language (``GET /v1/languages``), from what is on disk:
    the recognizer of each language, its voice, and its route to every language it reaches."""
    from agents.engines.registry import plan_routes

    paths = ModelPaths(settings.models_dir)
    recognition = {language: settings.stt_model for language in recognized_languages(paths.whisper(settings.stt_model))}
    if settings.stt_model_en:
        recognition["en"] = settings.stt_model_en
    routes = plan_routes(translation_directions(settings), translation_quality())
    spoken = voices(settings)
    # A language no voice speaks is not offered: a listener could read it but never hear it.
    languages = sorted({code for pair in routes for code in pair if code in spoken})
    return LanguageCatalogue(
        languages={
            language: LanguageSupport(
                recognition=recognition.get(language),
                voice=spoken.get(language),
                translations={
                    target: route
                    for (source, target), route in sorted(routes.items())
                    if source == language and target in spoken
                },
            )
            for language in languages
        },
        recognized=sorted(recognition),
    )


def load_synthesizer(settings: Settings) -> FallbackSynthesizer:
    """The voice map: coqui voices, then Piper voices, then espeak-ng for every other language."""
    from agents.engines.coqui import CoquiSynthesizer
    from agents.engines.espeak import EspeakSynthesizer
    from agents.engines.piper import PiperSynthesizer

    paths = ModelPaths(settings.models_dir)
    piper = {lang: paths.piper(voice) for lang, voice in PIPER_VOICES.items() if paths.piper(voice).exists()}
    synthesizers: list[SpeechSynthesizer] = []
    if coqui := coqui_voices(paths):
        synthesizers.append(CoquiSynthesizer(coqui))
    return FallbackSynthesizer([*synthesizers, PiperSynthesizer(piper), EspeakSynthesizer()])
