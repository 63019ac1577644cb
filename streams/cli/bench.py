"""``dragoman bench``: every benchmark, on the whole system as users run it (see each bench module)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from streams.cli.common import STAGES, languages, worker_port
from streams.cli.system import running_system, settled_system
from streams.settings import Settings, get_settings

if TYPE_CHECKING:
    from streams.languages import LanguageCatalogue


def cmd_bench(args: argparse.Namespace) -> None:
    if args.what == "engines":
        from agents.bench import bench_engines, print_report

        print_report(bench_engines(get_settings(), args.prompts))
        return
    live = {"load": _bench_load, "soak": _bench_soak, "languages": _bench_languages, "idle": _bench_idle,
            "captions": _bench_captions}  # fmt: skip
    if args.what in live:
        live[args.what](args)
        return

    from agents.models import load_synthesizer
    from agents.tts import to_pcm16
    from streams.cli.bench_pipeline import bench_pipeline

    settings = get_settings()
    # The speaker's words are real speech, made by the English neural voice.
    sentences = load_synthesizer(settings).synthesize("Good morning everyone, shall we begin?", "en")
    speech = b"".join(to_pcm16(audio) for audio in sentences)
    with settled_system(settings) as system:
        bench_pipeline(system.url, system.bootstrap, system.secret, args.utterances or 30, speech)


MAX_UTTERANCE_S = 8.0
"""Longer prompts are left out: a speaker says them with pauses, and the recognizer cuts them."""


def bench_speech(language: str, count: int) -> tuple[list[bytes], str]:
    """``count`` recorded prompts in the speakers' language, each under ``MAX_UTTERANCE_S`` and trimmed of
    silence, and the listeners' language."""
    from agents.recordings import prompt_audio, spoken_prompts
    from agents.tts import to_pcm16
    from schemas import SAMPLE_RATE
    from streams.cli.measures import trim_silence

    speech = [trim_silence(to_pcm16(prompt_audio(language, name))) for name in spoken_prompts(language, 3 * count)]
    short = [pcm for pcm in speech if len(pcm) / 2 / SAMPLE_RATE < MAX_UTTERANCE_S]
    return short[:count], "es" if language == "en" else "en"


def _bench_load(args: argparse.Namespace) -> None:
    """N rooms at once, for each N (see streams.cli.bench_load)."""
    from streams.cli.bench_load import bench_load

    settings = get_settings()
    speech, listen = bench_speech(args.language, args.utterances or 8)
    listen = args.listen or listen
    rooms = [int(n) for n in (args.rooms or "1,2,4,6,8,12").split(",")]
    stt_metrics = args.stt_metrics or f"http://127.0.0.1:{worker_port(settings.worker_web_port, 'stt')}/metrics"
    # Reprocess into a language no bench listener uses, under one id: each run replaces the last.
    replay_command = [sys.executable, "-m", "streams.cli", "replay", "reprocess", "--languages", "fr", "--id", "bench"]
    if args.url:
        secret = settings.jwt_secret or sys.exit("--url needs DRAGOMAN_JWT_SECRET, the running gateway's secret")
        replay = (replay_command, dict(os.environ)) if args.during_replay else None
        bench_load(args.url, secret, stt_metrics, rooms, speech, args.language, listen, replay)
        return
    with settled_system(settings) as system:
        env = {**os.environ, "DRAGOMAN_KAFKA_BOOTSTRAP": system.bootstrap}
        replay = (replay_command, env) if args.during_replay else None
        bench_load(system.url, system.secret, stt_metrics, rooms, speech, args.language, listen, replay)


def multilingual_meeting(
    settings: Settings, prompts: int
) -> tuple[dict[str, list[bytes]], dict[str, list[str]], list[str], LanguageCatalogue]:
    """The multilingual bench's meeting: each parallel language's first ``prompts`` prompts as trimmed
    speech, their references, the listening languages (those spoken, and any other language served
    that some of them cannot reach), and the catalogue they were chosen from."""
    from agents.models import load_synthesizer
    from agents.recordings import parallel_prompts, parallel_speech
    from agents.tts import to_pcm16
    from streams.cli.measures import trim_silence

    names, said = parallel_prompts()
    names = names[:prompts]
    voice = load_synthesizer(settings)
    speech = {lang: [trim_silence(to_pcm16(parallel_speech(lang, n, voice))) for n in names] for lang in said}
    references = {lang: [said[lang][n] for n in names] for lang in said}
    catalogue = languages(settings)
    others = [lang for lang in catalogue.languages if lang not in said and catalogue.listenable(lang)
              and any(not catalogue.reachable(s, lang) for s in said)]  # fmt: skip
    return speech, references, [*said, *others], catalogue


def _bench_languages(args: argparse.Namespace) -> None:
    """Route quality text to text (``--write-quality`` files it for the registry), then one multilingual
    meeting, live (see streams.cli.bench_languages)."""
    from agents.bench import bench_route_quality
    from agents.models import QUALITY
    from streams.cli.bench_languages import print_report, run_meeting, summarize

    settings = get_settings()
    quality = bench_route_quality(settings)
    print("route chrF, text to text on the references (what picks pivots; not the live figure):")
    print(json.dumps(quality))
    if args.write_quality:
        QUALITY.write_text(json.dumps(quality, indent=1) + "\n")
        print(f"written to {QUALITY}")
    speech, references, listeners, catalogue = multilingual_meeting(settings, args.prompts)
    with settled_system(settings) as system:
        meeting = asyncio.run(run_meeting(system.url, system.secret, speech, listeners))
    print_report(summarize(meeting, references, catalogue, listeners))


def _bench_captions(args: argparse.Namespace) -> None:
    """A continuous reading, word by word: how soon each word is on screen (see streams.cli.bench_captions);
    first, what one reader costs the stt transform alone (:func:`agents.stt_cost.bench_reading_cost`)."""
    from agents.bench import word_error_rate
    from agents.hypotheses import normalize_text
    from agents.models import load_recognizer, load_vad
    from agents.recordings import continuous_reading, word_timings
    from agents.stt_config import SttConfig
    from agents.stt_cost import bench_reading_cost
    from agents.tts import to_pcm16
    from streams.cli.bench_captions import read_aloud, summarize
    from streams.cli.measures import PROCESS_CPU, cpu_use

    settings = get_settings()
    audio, said = continuous_reading(args.language, args.seconds, args.pause)
    recognizer = load_recognizer(settings)
    words = word_timings(recognizer, audio, args.language)
    offline_text = " ".join(w for _, _, w in words)
    offline_wer = word_error_rate([" ".join(said)], [offline_text])
    print(f"reading: {len(audio) / 16_000:.1f} s, {len(said)} prompts {args.pause} s apart, {len(words)} words timed "
          f"offline, offline WER {offline_wer:.3f}")  # fmt: skip
    cost = bench_reading_cost(recognizer, load_vad(settings), SttConfig.from_settings(settings), audio, said,
                              args.language)  # fmt: skip
    print("one reader through the stt transform alone (virtual clock, a tuning figure, not live): " + json.dumps(cost))
    del recognizer  # the bench process's copy of the model: its memory is the workers' now
    stt_workers = [(f"http://127.0.0.1:{worker_port(settings.worker_web_port, 'stt', replica)}/metrics", PROCESS_CPU)
                   for replica in range(settings.replicas)]  # fmt: skip
    with settled_system(settings) as system:
        for rooms in [int(n) for n in (args.rooms or "1,6").split(",")]:
            with cpu_use(stt_workers) as used:
                streams = asyncio.run(read_aloud(system.url, system.secret, rooms, to_pcm16(audio), args.language))
            report = summarize(streams, words, said, offline_wer, offline_text, normalize_text, word_error_rate)
            report |= {"stt_workers_cpu_cores": [None if c is None else round(c, 2) for c in used.processes],
                       "machine_cpu_cores": round(used.machine, 2)}  # fmt: skip
            print(json.dumps(report), flush=True)


def _bench_idle(args: argparse.Namespace) -> None:
    """The whole system with nobody speaking: how long it takes to be ready, then the CPU each process
    uses and the broker's memory over ``--minutes`` (from every process's /metrics)."""
    from streams.cli.measures import PROCESS_CPU, cpu_use, metric_value

    settings = get_settings()
    started = time.monotonic()
    with running_system(settings) as system:
        ready_s = time.monotonic() - started
        counters = {stage: (f"http://127.0.0.1:{worker_port(settings.worker_web_port, stage)}/metrics", PROCESS_CPU)
                    for stage in STAGES}  # fmt: skip
        counters["gateway"] = (f"{system.url}/metrics", PROCESS_CPU)
        own = f"http://127.0.0.1:{settings.worker_web_port + len(STAGES)}/metrics"
        counters["broker"] = (own, f"dragoman_broker_{PROCESS_CPU}")
        time.sleep(20.0)  # the spares load and the groups settle
        with cpu_use(list(counters.values())) as used:
            time.sleep(args.minutes * 60)
        cores = {name: round(c, 3) for name, c in zip(counters, used.processes, strict=True) if c is not None}
        resident = metric_value(own, "dragoman_broker_process_resident_memory_bytes")
    summary = {"bench": "idle", "broker": "external" if settings.kafka_bootstrap else settings.broker,
               "ready_s": round(ready_s, 1), "idle_cores": cores, "idle_cores_total": round(sum(cores.values()), 3),
               "broker_resident_mb": None if resident is None else round(resident / 1e6)}  # fmt: skip
    print(json.dumps(summary))


def _bench_soak(args: argparse.Namespace) -> None:
    """Rooms looping recorded prompts for a while, watching latency and memory (see streams.cli.bench_soak)."""
    from streams.cli.bench_soak import bench_soak

    settings = get_settings()
    speech, listen = bench_speech(args.language, args.utterances or 12)
    listen = args.listen or listen
    rooms = int(args.rooms or "4")

    def measure(url: str, secret: str) -> None:
        resident = "process_resident_memory_bytes"
        memory = {
            stage: (f"http://127.0.0.1:{worker_port(settings.worker_web_port, stage)}/metrics", resident)
            for stage in STAGES
        }
        memory["gateway"] = (f"{url}/metrics", resident)
        supervisor = f"http://127.0.0.1:{settings.worker_web_port + len(STAGES)}/metrics"
        memory["broker"] = (supervisor, f"dragoman_broker_{resident}")
        bench_soak(url, secret, memory, args.minutes, rooms, speech, args.language, listen)

    if args.url:
        measure(args.url, settings.jwt_secret or sys.exit("--url needs DRAGOMAN_JWT_SECRET"))
        return
    with settled_system(settings) as system:
        measure(system.url, system.secret)
