"""Child processes for ``dragoman up`` and ``worker --stage all``.

Children die with their parent (PR_SET_PDEATHSIG), are stopped with SIGTERM
and, after a grace period, SIGKILL: Faust can hang in shutdown for 30 s+ when
stopped soon after starting.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

from streams import metrics
from streams.broker import _die_with_parent

log = logging.getLogger(__name__)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


GRACE_S = 8.0
MAX_RESTARTS = 3
"""Restarts of one child within ``RESTART_WINDOW_S`` before the supervisor gives up on it."""
RESTART_WINDOW_S = 300.0


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self._env = {**os.environ, **env}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._args: dict[str, list[str]] = {}
        self._restarts: dict[str, list[float]] = {}

    def spawn(self, name: str, args: Sequence[str]) -> None:
        """Start ``dragoman <args>`` as child ``name``."""
        self._args[name] = list(args)
        metrics.RESTARTS.labels(name)  # the series exists (at 0) before the first restart
        command = [sys.executable, "-m", "streams.cli", *args]
        self._children[name] = subprocess.Popen(command, env=self._env, preexec_fn=_die_with_parent)

    def exited(self) -> list[tuple[str, int]]:
        """Children that are no longer running, with their exit codes."""
        return [(name, code) for name, p in self._children.items() if (code := p.poll()) is not None]

    def restart_exited(self) -> list[tuple[str, int]]:
        """Start again every child that died; returns those that died too often to restart."""
        given_up = []
        now = time.monotonic()
        for name, code in self.exited():
            recent = [t for t in self._restarts.get(name, []) if now - t < RESTART_WINDOW_S]
            if len(recent) >= MAX_RESTARTS:
                given_up.append((name, code))
                continue
            log.warning("%s exited with %d: restarting it", name, code)
            metrics.RESTARTS.labels(name).inc()
            self._restarts[name] = [*recent, now]
            self.spawn(name, self._args[name])
        return given_up

    def wait_until_ready(self, urls: Sequence[str], timeout_s: float) -> None:
        """Block until every URL answers 200; raises if a child exits or time runs out first."""
        deadline = time.monotonic() + timeout_s
        while not all(_answers(url) for url in urls):
            if self.exited() or time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {self.exited() or 'timed out'}")
            time.sleep(0.3)

    def kill(self, name: str) -> None:
        """SIGKILL one child, as a crash would."""
        child = self._children.pop(name)
        child.kill()
        child.wait()

    def stop(self) -> None:
        for child in self._children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for name, child in self._children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", name, GRACE_S)
                child.kill()
                child.wait()
        self._children.clear()
