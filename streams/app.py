"""The Kafka side of a stage: one Faust app per stage, and its lifecycle.

A stage app is its own consumer group (``dragoman-<stage>``), so each stage scales on its own.
It owns all of Kafka for its stage, in three parts: this module's lifecycle (configuration, topics
and changelogs created before it subscribes, load → warm → ready → close, with its engines closed
and its data directory removed at stop; its ``/metrics`` and ``/ready`` pages, and a load report
on ``pipeline.load`` every second, :class:`~schemas.StageLoad`), the message loop
(:mod:`streams.stage_loop`: decode, process, stamp, route, acknowledge) and the error policy
(:mod:`streams.policy`: dropped, transient, failed, fatal).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import faust
from faust.types import StreamT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from schemas import DeadLetter, RoomEvent, StageLoad, decode, encode
from streams import metrics
from streams.broker import ensure_topics
from streams.policy import ErrorPolicy
from streams.rooms import RoomState, apply_event, from_table, present, to_table
from streams.settings import Settings
from streams.stage import StageTransform
from streams.stage_loop import StageLoop
from streams.topics import DLQ, PIPELINE_LOAD, ROOM_EVENTS, TopicSpec
from streams.transport import Consumer

log = logging.getLogger(__name__)
T = TypeVar("T")

REPORT_EVERY_S = 1.0
ACTIVE_WINDOW_S = 5.0
"""A stream that sent something this recently is active (for stt: a speaker streaming audio)."""


class Closable(Protocol):
    def close(self) -> None: ...


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
        self._dlq = self.raw_topic(DLQ)
        self._load_topic = self.raw_topic(PIPELINE_LOAD)
        self.policy = ErrorPolicy(stage, self.send_dead_letter)
        self._source: str | None = None
        self._source_specs: list[TopicSpec] = []
        """The topics its stages read: created with the rest, should a stage read one of its own."""
        self.load = LoadMeter()
        self._engines: list[Closable] = []
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

    def closing(self, engine: Closable) -> None:
        """Close ``engine`` when the worker stops: an engine's own processes (Apertium's pipelines)
        end with the worker instead of waiting for init."""
        self._engines.append(engine)

    async def on_stop(self) -> None:
        """Engines closed; the data directory, which holds nothing worth keeping (tables live in memory), removed."""
        await super().on_stop()
        for engine in self._engines:
            engine.close()
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

    def raw_topic(self, spec: TopicSpec) -> faust.TopicT:
        return self.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    # -- room state -------------------------------------------------------------

    def rooms(self) -> Callable[[str], RoomState]:
        """Materialize ``room.events`` into the ``rooms`` table; returns a lookup by room id.

        The table's changelog lets a restarted worker rebuild room state.
        """
        table = self.Table("rooms", default=dict, partitions=self.settings.partitions, key_type=str)
        lease_s = self.settings.presence_lease_s
        source = self.raw_topic(ROOM_EVENTS)

        @self.agent(source, name=f"{self.stage}-rooms")
        async def materialize(stream: StreamT[bytes]) -> None:
            async for value in stream:
                try:
                    event = decode(RoomEvent, value)
                except ValueError as exc:
                    assert stream.current_event is not None
                    await self.policy.dead_letter(stream.current_event.message, exc, attempts=1)
                    continue
                table[event.room_id] = to_table(apply_event(from_table(table[event.room_id]), event, lease_s))

        def lookup(room_id: str) -> RoomState:
            return present(from_table(table[room_id]), time.time(), lease_s)

        return lookup

    # -- the stage loop ----------------------------------------------------------

    def add_stage(self, source: TopicSpec, transform: StageTransform[Any, Any]) -> None:
        """Run ``transform`` on every record of ``source`` (see :mod:`streams.stage_loop`); the transform
        is warmed up here, before the worker starts and joins its group."""
        self._source = source.name
        self._source_specs.append(source)
        StageLoop(self, source, transform).wire()

    async def send_dead_letter(self, letter: DeadLetter) -> None:
        await self._dlq.send(key=letter.letter_id.encode(), value=encode(letter))
