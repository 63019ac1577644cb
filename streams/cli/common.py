"""What every command shares: the stages and their ports, the broker's address, the languages the
installed engines serve, and waiting for a signal."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from streams.settings import Settings
from streams.topics import STAGE_SOURCES

if TYPE_CHECKING:
    from streams.languages import LanguageCatalogue

STAGES = tuple(STAGE_SOURCES)
REALTIME_STAGES = ("stt", "translate", "tts")
"""Stages a meeting waits on: each keeps a warm spare under `up`, so a crash costs a rebalance, not
a model load. File transcription is not live; its worker is simply restarted."""
READY_TIMEOUT_S = 300.0

log = logging.getLogger("dragoman")


def require_bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        sys.exit("set DRAGOMAN_KAFKA_BOOTSTRAP (or use `dragoman up`, which starts a broker)")
    return settings.kafka_bootstrap


def wait_for_signal(poll: Callable[[], str | None] = lambda: None) -> str:
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


def worker_port(first: int, stage: str, replica: int = 0) -> int:
    """The web port (/metrics, /ready) of a stage's worker, from ``Settings.worker_web_port``."""
    return first + STAGES.index(stage) + replica * (len(STAGES) + 1)


def languages(settings: Settings) -> LanguageCatalogue:
    """What the installed engines serve; a model with random weights configured for users stops the command."""
    from agents.models import RandomWeightsRefused, describe_languages

    try:
        return describe_languages(settings)
    except RandomWeightsRefused as exc:
        sys.exit(f"refusing to start: {exc}")
