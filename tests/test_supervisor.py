"""The supervisor behind `up`: crashed children are restarted, a child that keeps crashing is given up."""

from __future__ import annotations

import time

import psutil

from streams.cli.supervisor import MAX_RESTARTS, Supervisor


def test_a_crashing_child_is_restarted_then_given_up() -> None:
    supervisor = Supervisor({})
    supervisor.spawn("broken", ["worker", "--stage", "no-such-stage"])  # argparse exits with 2 at once
    deadline = time.monotonic() + 60
    given_up: list[tuple[str, int]] = []
    restarts = 0
    while not given_up and time.monotonic() < deadline:
        time.sleep(0.2)
        exited = len(supervisor.exited())
        given_up = supervisor.restart_exited()
        restarts += exited if not given_up else 0
    supervisor.stop()
    assert given_up == [("broken", 2)]
    assert restarts == MAX_RESTARTS


def test_stop_leaves_no_process_behind() -> None:
    def descendants() -> set[psutil.Process]:
        return set(psutil.Process().children(recursive=True))

    before = descendants()  # e.g. the test session's own `dragoman up`
    supervisor = Supervisor({"DRAGOMAN_BROKER": "tansu"})
    supervisor.spawn("broker", ["broker"])  # a child that starts a child of its own (Tansu: it starts at once)
    deadline = time.monotonic() + 30
    while len(descendants() - before) < 2:
        assert time.monotonic() < deadline, "the broker never started"
        time.sleep(0.2)
    supervisor.stop()
    time.sleep(0.5)  # Tansu gets SIGTERM from its parent's death
    assert descendants() - before == set()
