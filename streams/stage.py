"""What a pipeline stage is, apart from Kafka: the contract between a stage's
pure transform (in ``agents/``) and the one Faust loop that drives every stage
(:mod:`streams.app`). Nothing here imports Faust.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import Literal, Protocol, TypeVar, runtime_checkable

from schemas import DropReason, Envelope, UtteranceDropped

InT = TypeVar("InT", bound=Envelope, contravariant=True)
OutT = TypeVar("OutT", bound=Envelope, covariant=True)


SkipReason = Literal["bad_frame", "duplicate", "no_voice", "rate_limited", "unchanged"]
"""Why a stage passes over an input nobody waits for: a frame it cannot read, one it already worked on,
a language with no voice, a partial too soon after the last, or one that says nothing new."""


class Dropped(Exception):
    """Raised by a transform to drop its input on purpose; counted by ``reason``, never retried.

    ``announcements`` say so to the people who were waiting for it (an utterance's speaker and
    listeners): dropped speech is never lost silently.
    """

    def __init__(self, reason: DropReason | SkipReason, *announcements: UtteranceDropped) -> None:
        super().__init__(reason)
        self.reason = reason
        self.announcements = announcements


class Transient(Exception):
    """A failure that may pass (an engine restarting its process, a device that went away for a
    moment): the stage loop tries the input again with backoff, then dead-letters it. A failure that
    declares nothing is treated the same way."""


class Fatal(Exception):
    """The process cannot go on (its model files are gone): it exits, and the supervisor starts it
    again; its unacknowledged input comes again to the worker that takes over."""


class Failed(Exception):
    """Raised by a transform when work it took on cannot be done (a model that kept failing after
    its retries): ``announcements`` are sent, the input is dead-lettered with ``cause``, and it is
    never retried, because the transform has already moved past it (its state is consistent and a
    second attempt would be a duplicate)."""

    def __init__(self, cause: BaseException, *announcements: UtteranceDropped) -> None:
        super().__init__(repr(cause))
        self.cause = cause
        self.announcements = announcements


class StageTransform(Protocol[InT, OutT]):
    """A stage's logic: records in, records out, no I/O.

    ``process`` is a generator so each output leaves as soon as it is made
    (a partial caption, one synthesized sentence). It runs in a worker
    thread, one step at a time, and may block on a model.

    A failure is declared where it happens: :class:`Dropped` (on purpose, announced),
    :class:`Transient` (retried, then dead-lettered), :class:`Failed` (given up after the
    transform's own retries, announced and dead-lettered), :class:`Fatal` (the process exits);
    see :mod:`streams.policy`. Anything undeclared is retried like a transient failure, so a
    transform raises it only before it has changed its state.

    A transform that keeps state across messages (STT's open utterances)
    names the stream a message belongs to; while ``is_open(key)``, that
    stream's source messages stay unacknowledged, so a crash replays them.
    """

    def process(self, record: InT, received_at: float) -> Iterator[OutT]: ...

    def warm_up(self) -> None:
        """Run the models once, so the first real message does not pay for their first call; the
        worker calls this before it joins its consumer group."""
        ...

    def stream_key(self, record: InT) -> Hashable: ...

    def is_open(self, key: Hashable) -> bool: ...

    def expire(self, now: float) -> Sequence[OutT]:
        """Close streams that went quiet (a client vanished mid-utterance); their outputs."""
        ...


@runtime_checkable
class Resumable(Protocol):
    """A transform whose streams span messages and are numbered (STT's audio, by sequence number),
    which can take up a stream where a dead worker left it.

    A crash replays a partition from its committed offset, the first message of any stream still
    open, so the messages of other streams that were fully worked on come again too. The worker
    keeps each stream's ``done_through`` in a table and hands it to ``resume`` after a takeover:
    the transform then skips those messages instead of working on them a second time.
    """

    def done_through(self, key: Hashable) -> int | None:
        """The number of the stream's last message whose work is finished (None: nothing yet)."""
        ...

    def resume(self, key: Hashable, done_through: int) -> None:
        """Take up stream ``key`` knowing its work is finished through ``done_through``."""
        ...

    def forget(self, key: Hashable) -> None:
        """Give up stream ``key``: its partition went to another worker, which replays what of it is not
        finished. Nothing more of it may come from here (an utterance closed here too would be said twice)."""
        ...


class Stateless:
    """The stream-keeping half of :class:`StageTransform` for transforms that keep none."""

    def warm_up(self) -> None:
        return None

    def stream_key(self, record: Envelope) -> Hashable:
        return None

    def is_open(self, key: Hashable) -> bool:
        return False

    def expire(self, now: float) -> list[Envelope]:
        return []
