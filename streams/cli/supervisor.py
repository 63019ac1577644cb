"""Child processes for ``dragoman up`` and ``worker --stage all``.

Children die with their parent (PR_SET_PDEATHSIG), are stopped with SIGTERM
and, after a grace period, SIGKILL: Faust can hang in shutdown for 30 s+ when
stopped soon after starting.

A crashed worker costs what its replacement needs before it consumes again, and two things
dominate that: loading its models (about 9 s) and its group noticing that the dead member is
gone (a session timeout, then a rebalance: 11 s on Tansu). So, for a worker spawned with a
``group``:

- the supervisor removes the dead member from its consumer group at once (a LeaveGroup on its
  behalf, with the member id the worker wrote to its member file), so the group rebalances now;
- with :meth:`Supervisor.stand_by`, a spare of the worker waits with its models loaded and warm
  (``dragoman worker --standby``) and takes over the moment the worker dies; a new spare is
  started behind it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from streams import metrics
from streams.broker import _die_with_parent, remove_member

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


@dataclass
class _Child:
    args: list[str]
    group: str | None
    """The consumer group it joins: left on its behalf when it dies."""
    process: subprocess.Popen[bytes]
    spare: subprocess.Popen[bytes] | None = None
    """A warm copy waiting on its stdin to take over (see :meth:`Supervisor.stand_by`)."""


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self._children: dict[str, _Child] = {}
        self._restarts: dict[str, list[float]] = {}
        self._run_dir = Path(tempfile.mkdtemp(prefix="dragoman-supervisor-"))
        # Its children make their temporary files in its run directory, which it removes when it stops:
        # a child killed with SIGKILL leaves nothing behind in the system's.
        self._env = {**os.environ, **env, "TMPDIR": str(self._run_dir)}

    def spawn(self, name: str, args: Sequence[str], group: str | None = None) -> None:
        """Start ``dragoman <args>`` as child ``name``; ``group``: the consumer group it joins as a
        worker (it is then given ``--member-file``, where it writes its member id)."""
        args = [*args, "--member-file", str(self._member_file(name))] if group else list(args)
        metrics.RESTARTS.labels(name)  # the series exists (at 0) before the first restart
        self._children[name] = _Child(args, group, self._start(args))

    def stand_by(self, name: str) -> None:
        """Keep a warm spare of worker ``name`` from now on."""
        child = self._children[name]
        if child.spare is None:
            self._warm_file(name).unlink(missing_ok=True)
            child.spare = self._start([*child.args, "--standby", str(self._warm_file(name))], stdin=subprocess.PIPE)
            metrics.SPARE_WARM.labels(name).set_function(lambda: self.spare_warm(name))

    def spare_warm(self, name: str) -> bool:
        """Whether ``name`` has a spare with its models loaded, waiting to take over."""
        spare = self._children[name].spare if name in self._children else None
        return spare is not None and spare.poll() is None and self._warm_file(name).exists()

    def _start(self, args: list[str], stdin: int | None = None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "streams.cli", *args]
        return subprocess.Popen(command, env=self._env, stdin=stdin, preexec_fn=_die_with_parent)

    def _member_file(self, name: str) -> Path:
        return self._run_dir / f"{name}.member"

    def _warm_file(self, name: str) -> Path:
        return self._run_dir / f"{name}.warm"

    def exited(self) -> list[tuple[str, int]]:
        """Children that are no longer running, with their exit codes."""
        return [(name, code) for name, c in self._children.items() if (code := c.process.poll()) is not None]

    def restart_exited(self) -> list[tuple[str, int]]:
        """Replace every child that died (by its spare, if it has one); returns those that died too
        often to restart. A spare that died is started again."""
        given_up = []
        now = time.monotonic()
        for name, code in self.exited():
            recent = [t for t in self._restarts.get(name, []) if now - t < RESTART_WINDOW_S]
            if len(recent) >= MAX_RESTARTS:
                given_up.append((name, code))
                continue
            metrics.RESTARTS.labels(name).inc()
            self._restarts[name] = [*recent, now]
            self._replace(name, code)
        for name, child in self._children.items():
            if child.spare is not None and child.spare.poll() is not None:
                log.warning("the spare of %s exited with %d: starting another", name, child.spare.returncode)
                child.spare = None
                self.stand_by(name)
        return given_up

    def _replace(self, name: str, code: int) -> None:
        child = self._children[name]
        self._leave_group(name, child)
        if child.spare is None:
            log.warning("%s exited with %d: restarting it", name, code)
            child.process = self._start(child.args)
            return
        log.warning("%s exited with %d: its warm spare takes over", name, code)
        spare, child.spare = child.spare, None
        assert spare.stdin is not None
        spare.stdin.write(b"take over\n")
        spare.stdin.flush()
        child.process = spare
        self.stand_by(name)

    def _leave_group(self, name: str, child: _Child) -> None:
        """Remove the dead worker from its group now, rather than after its session times out."""
        member_file = self._member_file(name)
        if child.group is None or not member_file.exists():
            return
        member_id = member_file.read_text().strip()
        member_file.unlink()
        try:
            asyncio.run(remove_member(self._env["DRAGOMAN_KAFKA_BOOTSTRAP"], child.group, member_id))
        except (KafkaError, OSError) as exc:  # the group still rebalances, after its session timeout
            log.warning("could not remove %s from %s: %s", member_id, child.group, exc)

    def wait_until_ready(self, urls: Sequence[str], timeout_s: float) -> None:
        """Block until every URL answers 200; raises if a child exits or time runs out first."""
        deadline = time.monotonic() + timeout_s
        while not all(_answers(url) for url in urls):
            if self.exited() or time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {self.exited() or 'timed out'}")
            time.sleep(0.3)

    def kill(self, name: str) -> None:
        """SIGKILL one child, as a crash would, and forget it."""
        child = self._children.pop(name)
        for process in (child.process, child.spare):
            if process is not None:
                process.kill()
                process.wait()

    def stop(self) -> None:
        processes = {name: c.process for name, c in self._children.items()}
        processes |= {f"{name} (spare)": c.spare for name, c in self._children.items() if c.spare is not None}
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for name, process in processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", name, GRACE_S)
                process.kill()
                process.wait()
        self._children.clear()
        shutil.rmtree(self._run_dir, ignore_errors=True)
