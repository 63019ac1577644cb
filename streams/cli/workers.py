"""``dragoman worker``: one stage's Faust app, with its transform and engines wired in (the stages'
registrations live here, in the composition root: ``agents/`` never sees the Faust app), or every
stage under a supervisor."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from streams.cli.common import REALTIME_STAGES, STAGES, log, require_bootstrap, wait_for_signal, worker_port
from streams.settings import get_settings
from streams.topics import STAGE_SOURCES

if TYPE_CHECKING:
    from streams.app import StageApp
    from streams.cli.supervisor import Supervisor


def register_stt(app: StageApp) -> None:
    """audio.raw → text.original, with the recognizer and VAD the settings name."""
    from agents.models import load_recognizer, load_vad
    from agents.stt import SpeechToText
    from agents.stt_config import SttConfig

    settings = app.settings
    transform = SpeechToText(load_recognizer(settings), load_vad(settings), SttConfig.from_settings(settings))
    app.add_stage(STAGE_SOURCES["stt"], transform)


def register_translate(app: StageApp) -> None:
    """text.original → text.translated, targets from the ``rooms`` table."""
    from agents.models import load_translator
    from agents.translate import Translate, TranslateConfig
    from streams.rooms import listening_languages

    room = app.rooms()
    translator = load_translator(app.settings)
    app.closing(translator)
    transform = Translate(translator, lambda room_id: listening_languages(room(room_id)),
                          TranslateConfig.from_settings(app.settings))  # fmt: skip
    app.add_stage(STAGE_SOURCES["translate"], transform)


def register_tts(app: StageApp) -> None:
    """text.translated → audio.synthesized."""
    from agents.models import load_synthesizer
    from agents.tts import Synthesize

    app.add_stage(STAGE_SOURCES["tts"], Synthesize(load_synthesizer(app.settings), app.settings.stale_after_s))


def register_transcribe(app: StageApp) -> None:
    """transcription.requests → transcripts."""
    from agents.models import load_recognizer
    from agents.transcribe import TranscribeFiles

    app.add_stage(STAGE_SOURCES["transcribe"], TranscribeFiles(load_recognizer(app.settings)))


def spawn_workers(supervisor: Supervisor, replicas: int) -> None:
    """``replicas`` workers of each live stage (named stt, stt-2, ...), one of file transcription."""
    for stage in STAGES:
        for replica in range(replicas if stage in REALTIME_STAGES else 1):
            name = f"{stage}-{replica + 1}" if replica else stage
            args = ["worker", "--stage", stage, *(["--replica", str(replica)] if replica else [])]
            supervisor.spawn(name, args, group=f"dragoman-{stage}")


def stand_by(supervisor: Supervisor, replicas: int) -> None:
    """A live stage with one worker keeps a warm spare; with replicas, the others take over."""
    if replicas == 1:
        for stage in REALTIME_STAGES:
            supervisor.stand_by(stage)


REGISTRATIONS: dict[str, Callable[[StageApp], None]] = {
    "stt": register_stt,
    "translate": register_translate,
    "tts": register_tts,
    "transcribe": register_transcribe,
}


def cmd_worker(args: argparse.Namespace) -> None:
    settings = get_settings()
    bootstrap = require_bootstrap(settings)
    if args.stage == "all":
        from streams.cli.supervisor import Supervisor

        supervisor = Supervisor({})
        spawn_workers(supervisor, settings.replicas)
        stand_by(supervisor, settings.replicas)
        given_up = supervisor.restart_exited
        reason = wait_for_signal(lambda: f"{failed} kept crashing" if (failed := given_up()) else None)
        log.info("stopping workers (%s)", reason)
        supervisor.stop()
        return

    import faust

    from streams import logs, metrics
    from streams.app import StageApp

    port = worker_port(settings.worker_web_port, args.stage, args.replica)
    app = StageApp(args.stage, settings, bootstrap, web_port=port, member_file=args.member_file)
    started = time.perf_counter()
    REGISTRATIONS[args.stage](app)
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
