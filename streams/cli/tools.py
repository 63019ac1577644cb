"""The operator's commands on the log and the models: ``replay``, ``dlq``, ``models``, ``config``."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
from pathlib import Path

from streams.cli.common import require_bootstrap
from streams.settings import Settings, get_settings


def cmd_models(args: argparse.Namespace) -> None:
    from agents import weights
    from streams.model_paths import ModelPaths

    paths = ModelPaths(get_settings().models_dir)
    if args.action == "prepare":
        written = weights.prepare(paths)
        print(f"{len(written)} files written; all models verified in {paths.root}")
    elif args.action == "build-test-models":
        for built in weights.build_test_models(paths):
            print(f"built {built}")
    elif args.action == "convert":
        print(f"converted to {weights.convert_to_ct2(paths.nllb(args.name), paths.nllb_ct2(args.name))}")
    elif args.action == "fetch":
        os.environ["HF_HUB_OFFLINE"] = "0"
        for fetched in weights.fetch(paths):
            print(f"fetched {fetched}")
    else:
        print(f"{'kind':<5} {'name':<18} {'size':>9}  {'engine':<11} {'languages':<34} path")
        for model in weights.installed(paths):
            size = f"{model.size_bytes / 1e6:.1f} MB"
            print(f"{model.kind:<5} {model.name:<18} {size:>9}  {model.engine:<11} {model.languages:<34} {model.path}")


def cmd_config(args: argparse.Namespace) -> None:
    print("| variable | default | meaning |\n| --- | --- | --- |")
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default).replace(str(os.path.expanduser("~")), "~")
        print(f"| `DRAGOMAN_{name.upper()}` | `{default}` | {field.description} |")


def time_arg(text: str) -> float:
    """A time on the command line: Unix seconds, or ISO 8601 (local time unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        return datetime.datetime.fromisoformat(text).timestamp()


def cmd_replay(args: argparse.Namespace) -> None:
    from streams import replay

    settings = get_settings()
    bootstrap = require_bootstrap(settings)
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

    bootstrap = require_bootstrap(get_settings())
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
