"""A stage whose failure has a cause that can be removed: it fails while a file exists. A cause
that starts with ``give up`` is declared (:class:`~streams.stage.Failed`: announced, dead-lettered
at once); any other is raised as it is (retried, then dead-lettered).

Run as ``python -m tests.flaky_stage BOOTSTRAP CAUSE DONE WEB_PORT``: a real :class:`StageApp`
(retries, dead letters, acks) over the test topic ``test.flaky``; each transcript it manages to
process has its utterance id appended to DONE.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import faust

from schemas import Transcript, UtteranceDropped
from streams.app import StageApp
from streams.settings import get_settings
from streams.stage import Failed, Stateless
from streams.topics import TopicSpec

FLAKY = TopicSpec("test.flaky", Transcript)


class FailWhileCauseExists(Stateless):
    def __init__(self, cause: Path, done: Path) -> None:
        self._cause, self._done = cause, done

    def process(self, transcript: Transcript, received_at: float) -> Iterator[Transcript]:
        if self._cause.exists():
            error = RuntimeError(f"cannot process: {self._cause.read_text()}")
            if self._cause.read_text().startswith("give up"):
                raise Failed(error, UtteranceDropped.of(transcript, "flaky", "error"))
            raise error
        with self._done.open("a") as done:
            done.write(transcript.utterance_id + "\n")
        yield from ()


if __name__ == "__main__":
    bootstrap, cause, done, port = sys.argv[1:5]
    app = StageApp("flaky", get_settings(), bootstrap, web_port=int(port))
    app.add_stage(FLAKY, FailWhileCauseExists(Path(cause), Path(done)))
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
