"""Egress: one consumer per gateway process, fanning records out to local sockets.

No consumer group: this process reads every partition itself. Room membership
and finished transcripts from the beginning (every gateway knows every room and
every transcript), recent captions for a late joiner's backlog, the rest from
the tail. It shares nothing with ingest but the event loop: a failing consumer
is restarted on its own and never stops ingest, and the reverse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Envelope, Record, StageLoad, SynthesizedAudio, Transcript, TranscriptionUpdate, Translation, decode
from streams import metrics
from streams.topics import BY_NAME, EGRESS_STATE_TOPICS, EGRESS_TOPICS, TEXT_ORIGINAL, TEXT_TRANSLATED, TopicSpec
from web.admission import PipelineLoad
from web.routing import Router
from web.transcripts import Transcriptions

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
BACKLOG_REPLAY = 200
"""Messages per text partition the egress re-reads at start, so the captions backlog survives a restart."""


class Egress:
    def __init__(
        self,
        bootstrap: str,
        fetch_max_wait_ms: int,
        router: Router,
        load: PipelineLoad,
        transcriptions: Transcriptions,
    ) -> None:
        self._bootstrap = bootstrap
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._router = router
        self._load = load
        self._transcriptions = transcriptions
        self.running = False
        self.live_since = float("inf")
        """Records sent before this were re-read at start: routed (backlog), not measured."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _forever(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("egress consumer failed; restarting")
            self.running = False
            await asyncio.sleep(RESTART_DELAY_S)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            await consumer.topics()  # loads partition metadata

            def partitions(specs: tuple[TopicSpec, ...]) -> list[TopicPartition]:
                return [TopicPartition(s.name, p) for s in specs for p in consumer.partitions_for_topic(s.name) or ()]

            heads, tails = partitions(EGRESS_STATE_TOPICS), partitions(EGRESS_TOPICS)
            consumer.assign(heads + tails)
            await consumer.seek_to_beginning(*heads)
            ends = await consumer.end_offsets(tails)
            for tp in tails:
                replay = BACKLOG_REPLAY if tp.topic in (TEXT_ORIGINAL.name, TEXT_TRANSLATED.name) else 0
                consumer.seek(tp, max(0, ends[tp] - replay))
            self.live_since = time.time()
            self.running = True
            async for message in consumer:
                try:
                    record = decode(cast(type[Envelope], BY_NAME[message.topic].record), message.value)
                except ValueError as exc:
                    log.warning("egress: undecodable %s@%d: %s", message.topic, message.offset, exc)
                    continue
                if isinstance(record, TranscriptionUpdate):
                    self._transcriptions.on_update(record)
                elif isinstance(record, StageLoad):
                    self._load.update(record)
                else:
                    self.deliver(cast(Record, record))
        finally:
            await consumer.stop()

    def deliver(self, record: Record) -> None:
        """Hand ``record`` to the outboxes of the local sockets the router picks."""
        now = time.time()
        if record.timings and record.timings[-1].sent_at >= self.live_since:
            _observe(record, now)
        for connection, messages in self._router.route(record):
            for message in messages:
                connection.outbox.put(message)


def _observe(record: Record, now: float) -> None:
    metrics.observe_last_stage(record)
    if isinstance(record, Transcript) and record.is_final and not isinstance(record, Translation):
        metrics.END_TO_END.labels("final_caption").observe(now - record.speech_ended_at)
    if isinstance(record, SynthesizedAudio) and record.chunk_index == 0:
        metrics.END_TO_END.labels("first_audio").observe(now - record.speech_ended_at)
