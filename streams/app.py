"""The Kafka side of a stage: one Faust app per stage, one loop for every stage.

A stage app is its own consumer group (``dragoman-<stage>``), so each stage
scales on its own. :meth:`StageApp.add_stage` wires a transform to its source
topic and owns everything Kafka: decoding, drop accounting and announcements,
running the transform off the event loop, retries with backoff, the dead
letter queue, stamping stage timings, sending each output to its record's
topic, and when to acknowledge. Every second the worker reports its load and
readiness on ``pipeline.load`` (:class:`~schemas.StageLoad`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import socket
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import faust
from faust.types import EventT, StreamT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from schemas import DeadLetter, Envelope, RoomEvent, StageLoad, UtteranceDropped, decode, encode
from streams import metrics
from streams.broker import ensure_topics
from streams.dlq import prior_attempts
from streams.rooms import RoomState, apply_event, present
from streams.settings import Settings
from streams.stage import Dropped, Failed, Resumable, StageTransform
from streams.topics import BY_RECORD, DLQ, PIPELINE_LOAD, ROOM_EVENTS, TopicSpec
from streams.transport import Consumer

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_DELAYS_S = (0.2, 1.0)
"""Backoff before the 2nd and 3rd attempt; after the last, the message goes to pipeline.dlq."""
EXPIRE_EVERY_S = 1.0
REPORT_EVERY_S = 1.0
ACTIVE_WINDOW_S = 5.0
"""A stream that sent something this recently is active (for stt: a speaker streaming audio)."""


class LoadMeter:
    """What a worker reports about its load: how far behind real time, how busy, which streams."""

    def __init__(self) -> None:
        self._period_started = time.monotonic()
        self._busy_s = 0.0
        self._backlog_s = 0.0
        self._last_seen: dict[str, float] = {}

    def taken(self, key: Hashable, lag_s: float) -> None:
        self._backlog_s = max(self._backlog_s, lag_s)
        if key is not None:
            self._last_seen[str(key)] = time.monotonic()

    def worked(self, seconds: float) -> None:
        self._busy_s += seconds

    def report(self) -> tuple[float, float, tuple[str, ...]]:
        """(backlog_s, busy share, active streams' keys) since the last report, and start a new period."""
        now = time.monotonic()
        busy = min(1.0, self._busy_s / max(1e-3, now - self._period_started))
        for key in [k for k, at in self._last_seen.items() if now - at > ACTIVE_WINDOW_S]:
            del self._last_seen[key]
        figures = (self._backlog_s, busy, tuple(sorted(self._last_seen)))
        self._period_started, self._busy_s, self._backlog_s = now, 0.0, 0.0
        return figures


class StageApp(faust.App):
    """A Faust app for one stage, configured from :class:`Settings`."""

    def __init__(
        self, stage: str, settings: Settings, bootstrap: str, web_port: int, member_file: Path | None = None
    ) -> None:
        super().__init__(
            f"dragoman-{stage}",
            broker=[f"dragoman://{server}" for server in bootstrap.split(",")],
            store="memory://",
            # The check guards a RocksDB file on disk against a changelog that lost data. Tables
            # here live in memory, and Tansu reports a partition's end up to a batch early, which
            # makes the check fail a healthy worker after a rebalance ("persisted offset 6 > 5").
            recovery_consistency_check=False,
            autodiscover=False,
            datadir=Path(tempfile.mkdtemp(prefix=f"dragoman-{stage}-")),  # memory store: nothing persists here
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            producer_acks=-1,  # every in-sync replica: a leader killed after acking loses nothing
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=settings.session_timeout_s / 4,
            broker_rebalance_timeout=settings.session_timeout_s * 2,
            consumer_auto_offset_reset="earliest",
            processing_guarantee="exactly_once" if settings.exactly_once else "at_least_once",
            producer_linger=0.0,
            stream_wait_empty=False,
            web_enabled=True,
            web_bind=settings.worker_web_host,
            web_host=settings.worker_web_host,
            web_port=web_port,
        )
        self.stage = stage
        self.settings = settings
        self._bootstrap = bootstrap
        if member_file is not None:
            self.on_partitions_assigned.connect(functools.partial(self._write_member_id, member_file))
        # One inference thread: transforms keep per-stream state and engines hold one model each;
        # a stage scales out with more worker processes, not threads.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=stage)
        self._dlq = self._topic(DLQ)
        self._load_topic = self._topic(PIPELINE_LOAD)
        self._busy = False
        self._source: str | None = None
        self._source_specs: list[TopicSpec] = []
        """The topics its stages read: created with the rest, should a stage read one of its own."""
        self.load = LoadMeter()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        # Every series this stage can have exists from the start at 0, so that a rate or an alert
        # sees the first retry, dead letter or stale drop instead of a series appearing from nowhere.
        for counter in (metrics.PROCESSED, metrics.RETRIES, metrics.DEAD_LETTERS):
            counter.labels(stage)
        metrics.DROPPED.labels(stage, "stale")
        for reason in ("stale", "error"):
            metrics.UTTERANCES_DROPPED.labels(stage, reason)

        @self.page("/metrics")
        async def prometheus(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

        @self.page("/ready")
        async def ready(web: Any, request: Any) -> Any:
            """200 once this worker owns partitions and is not rebalancing (its models are warm by then)."""
            return web.json({"ready": self.ready}, status=200 if self.ready else 503)

        @self.timer(REPORT_EVERY_S)
        async def report_load() -> None:
            backlog_s, busy, active = self.load.report()
            metrics.STAGE_BACKLOG.labels(stage).set(backlog_s)
            metrics.STAGE_BUSY.labels(stage).set(busy)
            report = StageLoad(stage=stage, worker_id=self.worker_id, at=time.time(), ready=self.ready,
                               partitions=self.owned_partitions(), backlog_s=backlog_s, busy=busy,
                               active_streams=active)  # fmt: skip
            await self._load_topic.send(key=report.key.encode(), value=encode(report))

    async def on_first_start(self) -> None:
        """Before the consumer subscribes: every topic exists with its partitions and config."""
        await super().on_first_start()
        # Its tables' changelogs too, compacted as Faust makes them: a changelog Faust creates itself can
        # still have no partitions in its consumer's metadata when the first key is set (seen on a
        # three-broker Kafka: PartitionsMismatch crashed the rooms table).
        changelogs = [TopicSpec(table.changelog_topic.get_topic_name(), BaseModel, compacted=True)
                      for table in self.tables.values()]  # fmt: skip
        await ensure_topics(self._bootstrap, self.settings.partitions, self.settings.replication_factor,
                            [*self._source_specs, *changelogs])  # fmt: skip

    async def on_stop(self) -> None:
        """Its data directory holds nothing worth keeping (tables live in memory): removed."""
        await super().on_stop()
        shutil.rmtree(self.conf.datadir, ignore_errors=True)

    async def _write_member_id(self, member_file: Path, sender: object, *args: object, **kwargs: object) -> None:
        """For the supervisor, which removes this member from its group if the process dies."""
        partial = member_file.with_suffix(".partial")
        partial.write_text(cast(Consumer, self.consumer).member_id)
        partial.replace(member_file)

    def owned_partitions(self) -> tuple[int, ...]:
        return tuple(sorted(tp.partition for tp in self.consumer.assignment() if tp.topic == self._source))

    @property
    def ready(self) -> bool:
        """Models are loaded and warmed before the worker starts, so: partitions owned, not rebalancing."""
        return bool(self.owned_partitions()) and not self.rebalancing

    def _topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    # -- room state -------------------------------------------------------------

    def rooms(self) -> Callable[[str], RoomState]:
        """Materialize ``room.events`` into the ``rooms`` table; returns a lookup by room id.

        The table's changelog lets a restarted worker rebuild room state.
        """
        table = self.Table("rooms", default=dict, partitions=self.settings.partitions, key_type=str)
        lease_s = self.settings.presence_lease_s
        source = self._topic(ROOM_EVENTS)

        @self.agent(source, name=f"{self.stage}-rooms")
        async def materialize(stream: StreamT[bytes]) -> None:
            async for value in stream:
                try:
                    event = decode(RoomEvent, value)
                except ValueError as exc:
                    assert stream.current_event is not None
                    await self._dead_letter(stream.current_event, exc, attempts=1)
                    continue
                table[event.room_id] = apply_event(table[event.room_id], event, lease_s)

        def lookup(room_id: str) -> RoomState:
            return present(dict(table[room_id]), time.time(), lease_s)

        return lookup

    # -- the stage loop -----------------------------------------------------------

    def add_stage(self, source: TopicSpec, transform: StageTransform[Any, Any]) -> None:
        """Run ``transform`` on every record of ``source``; each output goes to its record type's topic.

        The transform is warmed up here, before the worker starts and joins its group.
        """
        stage, source_topic = self.stage, self._topic(source)
        self._source = source.name
        self._source_specs.append(source)
        sinks = {spec.record: self._topic(spec) for spec in BY_RECORD.values()}
        held: dict[Hashable, list[EventT]] = defaultdict(list)
        started = time.perf_counter()
        transform.warm_up()
        log.info("%s: models warmed up in %.2f s", stage, time.perf_counter() - started)

        async def send(record: Envelope, received_at: float, compute_s: float) -> None:
            stamped = record.stamped(stage, received_at, time.time(), compute_s)
            if isinstance(stamped, UtteranceDropped):
                metrics.UTTERANCES_DROPPED.labels(stamped.stage, stamped.reason).inc()
                ids = {"room_id": stamped.room_id, "speaker_id": stamped.speaker_id,
                       "utterance_id": stamped.utterance_id, "language": stamped.language}  # fmt: skip
                log.info("%s: utterance %s announced as dropped (%s)", stage, stamped.utterance_id, stamped.reason,
                         extra=ids)  # fmt: skip
            await sinks[type(stamped)].send(key=stamped.key.encode(), value=encode(stamped))

        def release(key: Hashable) -> None:
            """Acknowledge a stream's held messages once its open work is done."""
            for event in held.pop(key, []):
                event.ack()

        resumable = transform if isinstance(transform, Resumable) else None
        # How far each stream's work is finished, kept for a worker that takes over (see Resumable).
        done: Any = {}
        if resumable is not None:
            done = self.Table(f"{stage}-done", partitions=self.settings.partitions, key_type=str, value_type=int)

        def note_done(key: Hashable) -> None:
            """Called in the agent, the one place a table may change; written only when it moved."""
            through = resumable.done_through(key) if resumable is not None else None
            if through is not None and done.get(str(key)) != through:
                done[str(key)] = through

        @self.agent(source_topic, name=stage)
        async def run(stream: StreamT[bytes]) -> None:
            # Manual acks: a message stays unacknowledged while its stream's work is open.
            async for event in cast(faust.Stream[bytes], stream).noack().events():
                received_at = time.time()
                metrics.PROCESSED.labels(stage).inc()
                try:
                    record = decode(cast(type[Envelope], source.record), event.value)
                except ValueError as exc:
                    await self._dead_letter(event, exc, attempts=1)
                    event.ack()
                    continue
                key = transform.stream_key(record)
                if resumable is not None and (through := done.get(str(key))) is not None:
                    resumable.resume(key, through)
                if record.timings:
                    lag_s = max(0.0, received_at - record.timings[-1].sent_at)
                    metrics.CONSUME_LAG.labels(stage).observe(lag_s)
                    self.load.taken(key, lag_s)
                await self._attempt(event, functools.partial(self._drive, transform, record, received_at, send), send)
                held[key].append(event)
                if not transform.is_open(key):
                    release(key)
                    note_done(key)

        @self.timer(EXPIRE_EVERY_S)
        async def expire() -> None:
            if self._busy:  # messages are flowing; a quiet stream can wait for the next tick
                return
            now = time.time()
            closed, compute_s = await asyncio.get_running_loop().run_in_executor(
                self.executor, _timed, transform.expire, now
            )
            self.load.worked(compute_s)
            for record in closed:
                await send(record, now, compute_s)
            for key in [k for k in held if not transform.is_open(k)]:
                release(key)

    async def _drive(
        self,
        transform: StageTransform[Any, Any],
        record: Envelope,
        received_at: float,
        send: Callable[[Envelope, float, float], Awaitable[None]],
    ) -> None:
        """Step the transform's generator in the executor; send each output as soon as it exists."""
        loop = asyncio.get_running_loop()
        outputs = transform.process(record, received_at)
        self._busy = True
        try:
            while True:
                output, compute_s = await loop.run_in_executor(self.executor, _timed, next, outputs, None)
                self.load.worked(compute_s)
                if output is None:
                    return
                await send(output, received_at, compute_s)
        finally:
            self._busy = False

    async def _attempt(
        self,
        event: EventT,
        work: Callable[[], Awaitable[None]],
        send: Callable[[Envelope, float, float], Awaitable[None]],
    ) -> None:
        """Run ``work`` with retries and backoff; drops are counted (and announced), failures dead-lettered."""
        for attempt in range(1, len(RETRY_DELAYS_S) + 2):
            try:
                await work()
                return
            except Dropped as drop:
                metrics.DROPPED.labels(self.stage, drop.reason).inc()
                for announcement in drop.announcements:
                    await send(announcement, time.time(), 0.0)
                return
            except Failed as failure:
                for announcement in failure.announcements:
                    await send(announcement, time.time(), 0.0)
                await self._dead_letter(event, failure.cause, attempts=attempt)
                return
            except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
                if attempt > len(RETRY_DELAYS_S):
                    await self._dead_letter(event, exc, attempts=attempt)
                    return
                metrics.RETRIES.labels(self.stage).inc()
                log.warning("%s attempt %d failed: %r", self.stage, attempt, exc, extra=_key_of(event))
                await asyncio.sleep(RETRY_DELAYS_S[attempt - 1])

    async def _dead_letter(self, event: EventT, error: BaseException, attempts: int) -> None:
        """Append the message to the DLQ; a re-driven one (see streams.dlq) counts its earlier attempts."""
        message = event.message
        letter = DeadLetter(
            stage=self.stage,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            error="".join(traceback.format_exception_only(error)).strip(),
            attempts=prior_attempts(message.headers) + attempts,
            failed_at=time.time(),
        )
        metrics.DEAD_LETTERS.labels(self.stage).inc()
        log.error(
            "%s: dead-lettered %s[%d]@%d: %s", self.stage, letter.topic, letter.partition, letter.offset, letter.error,
            extra=_key_of(event),
        )  # fmt: skip
        await self._dlq.send(key=letter.letter_id.encode(), value=encode(letter))


def _key_of(event: EventT) -> dict[str, str]:
    """A message's key for a log line's fields: the room id of every meeting topic."""
    key = event.message.key
    return {"room_id": key.decode("utf-8", "replace")} if isinstance(key, bytes) else {}


def _timed(work: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``work(*args)`` and the seconds it took, timed in the thread that runs it: model time, not the
    time spent waiting for the executor."""
    started = time.perf_counter()
    result = work(*args)
    return result, time.perf_counter() - started
