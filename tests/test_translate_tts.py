"""The translate and TTS transforms, called directly."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import psutil
import pytest

from agents.engines.apertium import ApertiumTranslator
from agents.engines.nllb import NllbTranslator
from agents.engines.sentences import split_sentences
from agents.translate import Translate, TranslateConfig
from agents.tts import CHUNK_SAMPLES, Synthesize
from schemas import Transcript, Translation
from streams.model_paths import ModelPaths
from streams.settings import get_settings
from streams.stage import Dropped
from tests.fakes import EchoTranslator, ToneSynthesizer


def transcript(text: str = "Hola. ¿Cómo estás?", is_final: bool = True, ended_at: float = 100.0) -> Transcript:
    return Transcript(
        room_id="room", speaker_id="u1", utterance_id="s:0", revision=0, language="es", text=text,
        is_final=is_final, audio_start_s=0.0, audio_end_s=2.0, speech_started_at=ended_at - 2, speech_ended_at=ended_at,
    )  # fmt: skip


def test_one_translation_per_listening_language_except_the_source() -> None:
    translator = EchoTranslator()
    translate = Translate(translator, lambda room: {"en", "es", "de"}, TranslateConfig())
    out = list(translate.process(transcript(), received_at=100.5))
    assert [t.target_language for t in out] == ["de", "en"]
    assert all(t.language == t.target_language and t.source_language == "es" for t in out)
    assert out[1].text == "[en] Hola. ¿Cómo estás?" and out[1].utterance_id == "s:0"
    assert len(translator.calls) == 1, "all targets of one utterance are one call"


def test_a_room_of_one_language_translates_nothing() -> None:
    translator = EchoTranslator()
    assert list(Translate(translator, lambda room: {"es"}, TranslateConfig()).process(transcript(), 100.5)) == []
    assert translator.calls == []


def test_partials_are_rate_limited_finals_never() -> None:
    now = [0.0]
    translate = Translate(
        EchoTranslator(), lambda room: {"en"}, TranslateConfig(partial_interval_s=1.0), lambda: now[0]
    )
    assert len(list(translate.process(transcript(is_final=False), 100.1))) == 1
    now[0] = 0.5
    with pytest.raises(Dropped, match="rate_limited"):
        list(translate.process(transcript(is_final=False), 100.1))
    assert len(list(translate.process(transcript(is_final=True), 100.1))) == 1


def test_only_confirmed_words_are_translated_and_never_twice() -> None:
    """A partial that changed only its tentative tail would translate to the same preview."""
    now = [0.0]
    translator = EchoTranslator()
    translate = Translate(translator, lambda room: {"en"}, TranslateConfig(partial_interval_s=1.0), lambda: now[0])
    [translated] = translate.process(transcript("Hola", is_final=False).model_copy(update={"tentative": "a to"}), 100.1)
    assert translated.text == "[en] Hola" and translated.tentative == ""
    now[0] = 2.0
    with pytest.raises(Dropped, match="unchanged"):
        list(translate.process(transcript("Hola", is_final=False).model_copy(update={"tentative": "a todos"}), 100.1))
    assert len(translator.calls) == 1


def test_stale_transcripts_are_dropped() -> None:
    translate = Translate(EchoTranslator(), lambda room: {"en"}, TranslateConfig(stale_after_s=5))
    with pytest.raises(Dropped, match="stale"):
        list(translate.process(transcript(ended_at=100.0), received_at=106.0))


def test_nllb_translates_to_three_targets_in_one_batched_call() -> None:
    translator = NllbTranslator(ModelPaths(get_settings().models_dir).nllb("nllb-test"))
    out = translator.translate("Por favor ingrese su numero de agente", "es", ["en", "de", "fr"])
    assert set(out) == {"en", "de", "fr"} and all(isinstance(text, str) for text in out.values())
    assert translator.batch_calls == 1


def translation(text: str, is_final: bool = True, language: str = "en") -> Translation:
    return Translation(
        **transcript(text, is_final).model_dump(exclude={"language", "text"}),
        language=language, text=text, source_language="es", target_language=language,
    )  # fmt: skip


def test_apertium_kept_running_translates_as_apertium_does_and_restarts_when_it_dies() -> None:
    sentences = ["Hello, how are you today?", "It costs $5 [or 50/50] @ noon *really*.", "I would like a coffee."]
    by_apertium = [
        " ".join(subprocess.run(["apertium", "-u", "eng-spa"], input=s, capture_output=True, text=True).stdout.split())
        for s in sentences
    ]  # fmt: skip
    translator = ApertiumTranslator()
    assert [translator.translate(s, "en", ["es"])["es"] for s in sentences] == by_apertium
    [pipeline] = translator._pipelines.values()
    pipeline.close()  # as if it had crashed
    assert translator.translate(sentences[0], "en", ["es"]) == {"es": by_apertium[0]}


def test_speech_comes_sentence_by_sentence_and_closes_with_a_marker() -> None:
    chunks = list(Synthesize(ToneSynthesizer({"en"})).process(translation("One. Two. Three."), 100.5))
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].pcm == b""
    spoken = b"".join(c.pcm for c in chunks)
    assert len(spoken) == 3 * int(16_000 * 0.7) * 2
    assert all(len(c.pcm) <= CHUNK_SAMPLES * 2 for c in chunks)
    assert np.abs(np.frombuffer(spoken, "<i2")).max() > 5000


def test_partials_are_not_spoken_and_unknown_voices_are_dropped() -> None:
    synthesize = Synthesize(ToneSynthesizer({"en"}))
    assert list(synthesize.process(translation("Hola", is_final=False), 100.5)) == []
    with pytest.raises(Dropped, match="no_voice"):
        list(synthesize.process(translation("Hallo", language="xx"), 100.5))


def test_apertium_keeps_a_bounded_number_of_pipelines_and_closes_them_whole() -> None:
    translator = ApertiumTranslator(max_pipelines=2)
    for source, target in (("en", "es"), ("es", "en"), ("es", "fr")):
        translator.translate("Hola.", source, [target])
    started = list(translator._pipelines.values())
    assert len(started) == 2, "the pipeline used longest ago was closed"
    groups = [os.getpgid(p._process.pid) for p in started]
    programs = [p for p in psutil.process_iter() if _group(p) in groups]
    assert len(programs) > len(started), "a pipeline is several programs"
    translator.close()
    assert translator._pipelines == {}
    # SIGKILLed, a program is gone a moment later: the kernel ends it, init reaps what was its shell's.
    _, alive = psutil.wait_procs(programs, timeout=5)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], "every program of each pipeline ended with it (dead ones wait for init to reap them)"


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


@pytest.mark.parametrize(
    ("text", "language", "sentences"),
    [
        ("Dr. Smith is here. Is it 3.5 km away? Yes!", "en", ["Dr. Smith is here.", "Is it 3.5 km away?", "Yes!"]),
        ("Hola a todos. ¿Empezamos?", "es", ["Hola a todos.", "¿Empezamos?"]),
        ("Bon dia, Sra. Puig. Comencem?", "ca", ["Bon dia, Sra. Puig.", "Comencem?"]),
        ("Saluton. Ĉu ni komencu?", "eo", ["Saluton.", "Ĉu ni komencu?"]),
    ],
)
def test_sentences_end_where_a_sentence_ends_not_at_every_full_stop(
    text: str, language: str, sentences: list[str]
) -> None:
    assert split_sentences(text, language) == sentences
