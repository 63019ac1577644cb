"""The message loop of a stage: decode, process, stamp, route, acknowledge.

One :class:`StageLoop` wires one transform into its :class:`~streams.app.StageApp`: a Faust agent
over the source topic (manual acknowledgement: a stream's messages stay unacknowledged while its
work is open, so a crash replays them), a timer that closes streams gone quiet, and the ``done``
table a worker that takes over resumes from (:class:`~streams.stage.Resumable`). The transform runs
in the app's one inference thread, never on the event loop; failures go to the app's
:class:`~streams.policy.ErrorPolicy`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import faust
from faust.types import TP, EventT, StreamT

from schemas import Envelope, UtteranceDropped, decode, encode
from streams import metrics
from streams.stage import Resumable, StageTransform
from streams.topics import BY_RECORD, TopicSpec

if TYPE_CHECKING:
    from streams.app import StageApp

log = logging.getLogger(__name__)
T = TypeVar("T")

EXPIRE_EVERY_S = 1.0
REBALANCE_GRACE_S = 5.0
"""After a rebalance the stage reads its backlog first: quiet streams are not expired for this long."""


class StageLoop:
    def __init__(self, app: StageApp, source: TopicSpec, transform: StageTransform[Any, Any]) -> None:
        self._app = app
        self._stage = app.stage
        self._source = source
        self._transform = transform
        self._sinks = {spec.record: app.raw_topic(spec) for spec in BY_RECORD.values()}
        self._held: dict[Hashable, list[EventT]] = defaultdict(list)
        self._resumable = transform if isinstance(transform, Resumable) else None
        # How far each stream's work is finished, kept for a worker that takes over (see Resumable).
        self._done: Any = {}
        if self._resumable is not None:
            self._done = app.Table(f"{self._stage}-done", partitions=app.settings.partitions, key_type=str,
                                   value_type=int)  # fmt: skip
        self._partitions: dict[Hashable, int] = {}
        """Each stream's partition (of its latest message): what a rebalance that moves it takes away."""
        self._busy = False
        self._rebalanced_at = 0.0

    def wire(self) -> None:
        """Warm the models up, then register the agent and the expiry timer with the app."""
        started = time.perf_counter()
        self._transform.warm_up()
        log.info("%s: models warmed up in %.2f s", self._stage, time.perf_counter() - started)
        self._app.agent(self._app.raw_topic(self._source), name=self._stage)(self._run)
        self._app.timer(EXPIRE_EVERY_S)(self._expire)
        self._app.on_partitions_assigned.connect(self._rebalanced)

    async def _rebalanced(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Partitions assigned (``args[0]``, every one this worker now has): the rebalance is over, and
        the backlog comes first."""
        self._rebalanced_at = time.time()
        assigned: set[TP] = args[0]
        owned = sorted(tp.partition for tp in assigned if tp.topic == self._source.name)
        log.info("%s: assigned partitions %s of %s", self._stage, owned, self._source.name)
        moved = [key for key, partition in self._partitions.items() if partition not in owned]
        if not moved or self._resumable is None:
            return
        # In the inference thread, where the transform runs: never beside its own work.
        await asyncio.get_running_loop().run_in_executor(self._app.executor, _forget, self._resumable, moved)
        for key in moved:
            del self._partitions[key]
            self._held.pop(key, None)  # the new owner has them from the last commit; acking them is not ours
        log.info("%s: %d streams moved to another worker, given up here", self._stage, len(moved))

    async def send(self, record: Envelope, received_at: float, compute_s: float) -> None:
        """Stamp ``record`` with this stage's timing and send it to its record type's topic."""
        stamped = record.stamped(self._stage, received_at, time.time(), compute_s)
        if isinstance(stamped, UtteranceDropped):
            metrics.UTTERANCES_DROPPED.labels(stamped.stage, stamped.reason).inc()
            ids = {"room_id": stamped.room_id, "speaker_id": stamped.speaker_id,
                   "utterance_id": stamped.utterance_id, "language": stamped.language}  # fmt: skip
            log.info("%s: utterance %s announced as dropped (%s)", self._stage, stamped.utterance_id, stamped.reason,
                     extra=ids)  # fmt: skip
        await self._sinks[type(stamped)].send(key=stamped.key.encode(), value=encode(stamped))

    async def _run(self, stream: StreamT[bytes]) -> None:
        transform, policy = self._transform, self._app.policy
        async for event in cast(faust.Stream[bytes], stream).noack().events():
            received_at = time.time()
            metrics.PROCESSED.labels(self._stage).inc()
            try:
                record = decode(cast(type[Envelope], self._source.record), event.value)
            except ValueError as exc:
                await policy.dead_letter(event.message, exc, attempts=1)
                event.ack()
                continue
            key = transform.stream_key(record)
            if self._resumable is not None:
                self._partitions[key] = event.message.partition
                if (through := self._done.get(str(key))) is not None:
                    self._resumable.resume(key, through)
            if record.timings:
                lag_s = max(0.0, received_at - record.timings[-1].sent_at)
                metrics.CONSUME_LAG.labels(self._stage).observe(lag_s)
                self._app.load.taken(key, lag_s)
            await policy.run(event.message, functools.partial(self._drive, record, received_at), self.send)
            self._held[key].append(event)
            if not transform.is_open(key):
                self._release(key)
                self._note_done(key)

    async def _drive(self, record: Envelope, received_at: float) -> None:
        """Step the transform's generator in the executor; send each output as soon as it exists."""
        loop = asyncio.get_running_loop()
        outputs = self._transform.process(record, received_at)
        self._busy = True
        try:
            while True:
                output, compute_s = await loop.run_in_executor(self._app.executor, _timed, next, outputs, None)
                self._app.load.worked(compute_s)
                if output is None:
                    return
                await self.send(output, received_at, compute_s)
        finally:
            self._busy = False

    async def _expire(self) -> None:
        if self._busy:  # messages are flowing; a quiet stream can wait for the next tick
            return
        now = time.time()
        # While the group rebalances, and for a moment after, nothing arrives from anyone: a stream is
        # quiet because the stage was paused, not because its client vanished, and closing its
        # utterance now would cut it in two around the pause.
        if self._app.rebalancing:
            self._rebalanced_at = now
        if now - self._rebalanced_at < REBALANCE_GRACE_S:
            return
        closed, compute_s = await asyncio.get_running_loop().run_in_executor(
            self._app.executor, _timed, self._transform.expire, now
        )
        self._app.load.worked(compute_s)
        for record in closed:
            await self.send(record, now, compute_s)
        for key in [k for k in self._held if not self._transform.is_open(k)]:
            self._release(key)

    def _release(self, key: Hashable) -> None:
        """Acknowledge a stream's held messages once its open work is done."""
        for event in self._held.pop(key, []):
            event.ack()

    def _note_done(self, key: Hashable) -> None:
        """Called in the agent, the one place a table may change; written only when it moved."""
        through = self._resumable.done_through(key) if self._resumable is not None else None
        if through is not None and self._done.get(str(key)) != through:
            self._done[str(key)] = through


def _forget(transform: Resumable, keys: list[Hashable]) -> None:
    for key in keys:
        transform.forget(key)


def _timed(work: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``work(*args)`` and the seconds it took, timed in the thread that runs it: model time, not the
    time spent waiting for the executor."""
    started = time.perf_counter()
    result = work(*args)
    return result, time.perf_counter() - started
