"""``dragoman bench engines``: what the models cost and how well they do, on real recordings.

Streaming is simulated against a virtual clock so the bench does not wait in
real time but measures as if it did: each 100 ms frame arrives when its last
sample was captured (or when the stage is free again, if it is still busy),
and the stage's clock advances by the wall time its processing really took.
Latency of a caption is then "clock when it was emitted − end of speech".
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from agents.engines.protocols import Float32Audio, SpeechRecognizer, SpeechSynthesizer, VoiceActivityDetector
from agents.hypotheses import normalize_text
from agents.recordings import (
    parallel_prompts,
    prompt_audio,
    prompt_transcripts,
    spoken_prompts,
)
from agents.stt import SpeechToText
from agents.stt_config import SttConfig

if TYPE_CHECKING:
    pass
from agents.tts import to_pcm16
from schemas import SAMPLE_RATE, AudioFrame, Transcript
from streams.settings import Settings

FRAME_SAMPLES = SAMPLE_RATE // 10
T = TypeVar("T")


def chrf_bleu(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    """Corpus chrF and BLEU (sacrebleu's defaults) of ``hypotheses`` against one reference each."""
    import sacrebleu

    return (round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 1),
            round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 1))  # fmt: skip


def bench_route_quality(settings: Settings) -> dict[str, float]:
    """chrF of every direct direction and every one-pivot chain between the parallel languages, text to
    text on the references: what the registry picks pivots by (``agents/data/translation_quality.json``).
    A tuning figure for routing, not the live one (that is from speech: ``bench languages``)."""
    from agents.engines.registry import pivot_chains, quality_key
    from agents.models import load_translator

    registry = load_translator(settings)
    engines = registry.engines
    directions = [(name, engine.pairs) for name, engine in engines.items()]
    names, said = parallel_prompts()
    languages = list(said)
    quality: dict[str, float] = {}
    try:
        for source, target in ((s, t) for s in languages for t in languages if s != t):
            texts = [said[source][n] for n in names]
            references = [said[target][n] for n in names]
            for engine in engines.values():
                if (source, target) in engine.pairs:
                    out = [engine.translate(t, source, [target])[target] for t in texts]
                    quality[quality_key([engine.name], [source, target])] = chrf_bleu(references, out)[0]
            for first, pivot, second in pivot_chains(directions, source, target):
                middle = [engines[first].translate(t, source, [pivot])[pivot] for t in texts]
                out = [engines[second].translate(m, pivot, [target])[target] for m in middle]
                quality[quality_key([first, second], [source, pivot, target])] = chrf_bleu(references, out)[0]
    finally:
        registry.close()
    return dict(sorted(quality.items()))


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalize_text(r) for r in references], [normalize_text(h) or "-" for h in hypotheses]))


# --- streaming simulation ----------------------------------------------------------------------


@dataclass(frozen=True)
class StreamedUtterance:
    final_text: str
    """Every final of the stream, joined (a long prompt may be several utterances)."""
    captions: dict[str, list[str]]
    """Utterance id → its captions in order: partials, then the final."""
    first_partial_latency_s: float | None
    """From the start of speech to the first partial caption."""
    final_latency_s: float
    """From the end of speech to the final caption."""


def stream_utterance(
    stt: SpeechToText, audio: Float32Audio, language: str, session: str, lead_s: float = 0.5, tail_s: float = 1.5
) -> StreamedUtterance:
    """Stream ``audio`` (with silence around it) through ``stt`` in 100 ms frames on a virtual clock."""
    pcm = to_pcm16(np.concatenate([np.zeros(int(lead_s * SAMPLE_RATE), np.float32), audio,
                                   np.zeros(int(tail_s * SAMPLE_RATE), np.float32)]))  # fmt: skip
    epoch = 1_000_000.0
    clock = epoch
    emitted: list[tuple[float, Transcript]] = []
    for index, start in enumerate(range(0, len(pcm), FRAME_SAMPLES * 2)):
        chunk = pcm[start : start + FRAME_SAMPLES * 2]
        captured_at = epoch + start / 2 / SAMPLE_RATE
        frame = AudioFrame(room_id="bench", session_id=session, speaker_id="bench", sequence_number=index,
                           captured_at=captured_at, language=language, pcm=chunk)  # fmt: skip
        clock = max(clock, captured_at + len(chunk) / 2 / SAMPLE_RATE)
        started = time.perf_counter()
        for transcript in stt.process(frame, clock):
            clock += time.perf_counter() - started
            started = time.perf_counter()
            if isinstance(transcript, Transcript):  # on this virtual clock nothing goes stale
                emitted.append((clock, transcript))
        clock += time.perf_counter() - started
    finals = [(at, t) for at, t in emitted if t.is_final]
    partials = [(at, t) for at, t in emitted if not t.is_final]
    captions: dict[str, list[str]] = {}
    for _, transcript in emitted:
        captions.setdefault(transcript.utterance_id, []).append(transcript.text)
    speech_start = epoch + lead_s
    if not finals:
        return StreamedUtterance("", captions, None, float("nan"))
    last_at, last = finals[-1]
    return StreamedUtterance(
        final_text=" ".join(t.text for _, t in finals),
        captions=captions,
        first_partial_latency_s=(partials[0][0] - speech_start) if partials else None,
        final_latency_s=last_at - last.speech_ended_at,
    )


# --- the bench ------------------------------------------------------------------------------------


def timed(load: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = load()
    return value, time.perf_counter() - started


def bench_recognition(
    recognizer: SpeechRecognizer, vad: VoiceActivityDetector, language: str, prompts: list[str]
) -> dict[str, object]:
    references = [prompt_transcripts(language)[name] for name in prompts]
    audios = [prompt_audio(language, name) for name in prompts]
    offline, seconds = [], 0.0
    for audio in audios:
        recognition, elapsed = timed(functools.partial(recognizer.transcribe, audio, language))
        offline.append(recognition.text)
        seconds += elapsed
    stt = SpeechToText(recognizer, vad, SttConfig())
    streamed = [stream_utterance(stt, audio, language, f"s{i}") for i, audio in enumerate(audios)]
    first_partials = [s.first_partial_latency_s for s in streamed if s.first_partial_latency_s is not None]
    return {
        "language": language,
        "prompts": len(prompts),
        "audio_s": round(sum(len(a) for a in audios) / SAMPLE_RATE, 1),
        "rtf_offline": round(seconds / (sum(len(a) for a in audios) / SAMPLE_RATE), 3),
        "wer_offline": round(word_error_rate(references, offline), 3),
        "wer_streaming": round(word_error_rate(references, [s.final_text for s in streamed]), 3),
        "first_partial_s_median": round(statistics.median(first_partials), 3) if first_partials else None,
        "final_after_speech_s_median": round(statistics.median(s.final_latency_s for s in streamed), 3),
        "final_after_speech_s_max": round(max(s.final_latency_s for s in streamed), 3),
    }


MEETING_SENTENCES = [
    "Good morning everyone, thank you for joining the meeting today.",
    "Let us start with a quick review of last week's action items.",
    "The new release is almost ready, but we still need to fix two bugs.",
    "Could you share your screen so that everyone can see the numbers?",
    "I think we should move the deadline to the end of next month.",
    "Does anyone have questions before we continue with the budget?",
    "Our customers asked for better support in Spanish and in German.",
    "Please send me the report after the meeting, and I will review it tonight.",
]
"""What the round trip speaks: meeting talk (telephony prompts like "press the pound key" measure
the recognizer's jargon more than the voice)."""


def round_trip_wer(synthesizer: SpeechSynthesizer, recognizer: SpeechRecognizer, texts: list[str],
                   language: str = "en") -> float:  # fmt: skip
    """Speak each text in ``language``, recognize it again, and score what came back."""
    heard = [recognizer.transcribe(np.concatenate(list(synthesizer.synthesize(t, language))), language).text
             for t in texts]  # fmt: skip
    return word_error_rate(texts, heard)


def bench_voices(settings: Settings, recognizers: dict[str, SpeechRecognizer]) -> list[dict[str, object]]:
    """Each listed language's voice: its real-time factor (synthesis time per second of speech) and its
    round trip (voice → the language's recognizer) WER, on the parallel references where they exist,
    else on the Spanish (or English) references translated by the registry."""
    from agents.models import describe_languages, load_synthesizer, load_translator

    catalogue = describe_languages(settings)
    synthesizer, translator = load_synthesizer(settings), load_translator(settings)
    names, said = parallel_prompts()
    rows: list[dict[str, object]] = []
    try:
        for language, support in catalogue.languages.items():
            source = next(s for s in ("es", "en") if catalogue.reachable(s, language))
            texts = [said[language][n] if language in said else translator.translate(said[source][n], source,
                     [language])[language] for n in names]  # fmt: skip
            started = time.perf_counter()
            spoken = [np.concatenate(list(synthesizer.synthesize(t, language))) for t in texts]
            seconds = time.perf_counter() - started
            recognizer = recognizers.get(language if language == "en" else "*")
            heard = None
            if support.recognition is not None and recognizer is not None:
                heard = [recognizer.transcribe(audio, language).text for audio in spoken]
            rows.append({
                "language": language, "voice": support.voice, "texts": "references" if language in said else
                f"translated from {source}", "rtf": round(seconds / (sum(map(len, spoken)) / SAMPLE_RATE), 3),
                "round_trip_wer": None if heard is None else round(word_error_rate(texts, heard), 3),
            })  # fmt: skip
    finally:
        translator.close()
    return rows


def bench_engines(settings: Settings, prompts_per_language: int = 10) -> dict[str, object]:
    from agents.engines.whisper import WhisperRecognizer
    from agents.models import load_synthesizer, load_translator, load_vad
    from streams.model_paths import ModelPaths

    paths = ModelPaths(settings.models_dir)
    vad, vad_load = timed(lambda: load_vad(settings))

    def whisper(model: str) -> WhisperRecognizer:  # one model each: their figures are reported apart
        return WhisperRecognizer(paths.whisper(model), None, settings.stt_device, settings.stt_compute_type,
                                 settings.stt_threads)  # fmt: skip

    tiny, tiny_load = timed(lambda: whisper(settings.stt_model_en))
    base, base_load = timed(lambda: whisper(settings.stt_model))
    translator, mt_load = timed(lambda: load_translator(settings))
    synthesizer, tts_load = timed(lambda: load_synthesizer(settings))

    loads = {"silero": vad_load, settings.stt_model_en: tiny_load, settings.stt_model: base_load,
             translator.name: mt_load, synthesizer.name: tts_load}  # fmt: skip
    report: dict[str, object] = {
        "load_s": {name: round(seconds, 2) for name, seconds in loads.items()},
        "stt": [
            {
                "model": settings.stt_model_en,
                **bench_recognition(tiny, vad, "en", spoken_prompts("en", prompts_per_language)),
            },
            {
                "model": settings.stt_model,
                **bench_recognition(base, vad, "es", spoken_prompts("es", prompts_per_language)),
            },
        ],
    }

    report["hallucinations"] = bench_hallucinations(tiny, vad)

    sentence = "Good morning everyone. Shall we begin with the first item on the agenda?"
    _, mt_s = timed(lambda: translator.translate(sentence, "en", ["es", "fr", "it"]))
    report["mt"] = {"engine": translator.name, "three_targets_one_direct_two_pivoted_s": round(mt_s, 3)}

    tts: dict[str, object] = {"engine": synthesizer.name}
    for language, text in (("en", sentence), ("es", "Buenos días a todos. ¿Empezamos con el primer punto?")):
        _, first_s = timed(functools.partial(next, iter(synthesizer.synthesize(text, language))))
        tts[f"first_chunk_s_{language}"] = round(first_s, 3)
    tts["round_trip_wer_en_meeting_talk"] = round(round_trip_wer(synthesizer, tiny, MEETING_SENTENCES), 3)
    report["tts"] = tts
    report["voices"] = bench_voices(settings, {"en": tiny, "*": base})
    return report


SHORT_PHRASES = {"auth-thankyou": "thank you", "privacy-thankyou": "thank you", "goodbye": "goodbye",
                 "vm-goodbye": "goodbye", "vm-no": "no"}  # fmt: skip
"""Recorded prompts that are whole utterances Whisper also "hears" in silence."""


def quiet_inputs(rng: np.random.Generator) -> dict[str, Float32Audio]:
    """Ten seconds each of what a microphone hears when nobody speaks."""
    t = np.arange(SAMPLE_RATE * 10) / SAMPLE_RATE
    air = np.convolve(rng.normal(0, 1, len(t)), np.ones(40) / 40, mode="same")
    return {
        "silence": np.zeros(len(t), np.float32),
        "room noise": rng.normal(0, 0.004, len(t)).astype(np.float32),
        "mains hum": (0.01 * np.sin(2 * np.pi * 50 * t)).astype(np.float32),
        "breathing": (0.05 * np.clip(np.sin(np.pi * t), 0, None) ** 2 * air / np.abs(air).max()).astype(np.float32),
    }


def bench_hallucinations(recognizer: SpeechRecognizer, vad: VoiceActivityDetector) -> dict[str, object]:
    """Both sides of the hallucination rule, streamed through the STT stage: short real phrases kept,
    and captions made of nothing."""
    stt = SpeechToText(recognizer, vad, SttConfig())
    kept = [
        normalize_text(stream_utterance(stt, prompt_audio("en", name), "en", f"phrase-{name}").final_text) == said
        for name, said in SHORT_PHRASES.items()
    ]
    quiet = quiet_inputs(np.random.default_rng(0))
    invented = {name: stream_utterance(stt, audio, "en", f"quiet-{name}").final_text for name, audio in quiet.items()}
    return {
        "short_phrases_kept": f"{sum(kept)}/{len(kept)}",
        "quiet_inputs_captioned": f"{sum(bool(text) for text in invented.values())}/{len(invented)}",
        "captions_of_nothing": {name: text for name, text in invented.items() if text},
    }


def print_report(report: dict[str, object]) -> None:
    print("load (s): " + ", ".join(f"{name} {s}" for name, s in report["load_s"].items()))  # type: ignore[attr-defined]
    columns = ["model", "language", "prompts", "audio_s", "rtf_offline", "wer_offline", "wer_streaming",
               "first_partial_s_median", "final_after_speech_s_median", "final_after_speech_s_max"]  # fmt: skip
    print(" | ".join(columns))
    for row in report["stt"]:  # type: ignore[attr-defined]
        print(" | ".join(str(row[c]) for c in columns))
    print(f"hallucinations: {report['hallucinations']}")
    print(f"mt: {report['mt']}")
    print(f"tts: {report['tts']}")
    print("voice | language | texts | rtf | round_trip_wer")
    for voice in report["voices"]:  # type: ignore[attr-defined]
        print(f"{voice['voice']} | {voice['language']} | {voice['texts']} | {voice['rtf']} | {voice['round_trip_wer']}")
    print(json.dumps(report))
