"""Egress: one consumer per gateway process, fanning records out to local sockets.

No consumer group: this process reads every partition itself. At first start: room
membership and finished transcripts from the beginning (every gateway knows every
room and every transcript), recent captions for a late joiner's backlog (remembered,
not sent: they are not news to anyone connected), the rest from the tail. A consumer
that failed is restarted where it stopped, so sockets miss nothing it could still
read and get nothing twice. It shares nothing with ingest but the event loop: a
failing consumer is restarted on its own and never stops ingest, and the reverse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Envelope, Record, StageLoad, SynthesizedAudio, Transcript, TranscriptionUpdate, decode
from streams import metrics
from streams.broker import topic_partitions
from streams.history import seek_to_start
from streams.topics import BY_NAME, EGRESS_STATE_TOPICS, EGRESS_TOPICS, TEXT_ORIGINAL, TEXT_TRANSLATED, TopicSpec
from web.admission import PipelineLoad
from web.background import Background
from web.routing import Router
from web.transcripts import Transcriptions

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
BACKLOG_REPLAY = 200
"""Messages per text partition the egress re-reads at start, so the captions backlog survives a restart."""


class Egress(Background):
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
        """Records sent before this were re-read at first start: remembered (backlog), not sent or measured."""
        self._positions: dict[TopicPartition, int] = {}
        """The next offset of every partition read so far: where a restarted consumer resumes."""

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
        try:  # stopped also when it could not start (the broker is away): no leaked client
            await consumer.start()
            existing = await topic_partitions(self._bootstrap, [s.name for s in (*EGRESS_STATE_TOPICS, *EGRESS_TOPICS)])

            def partitions(specs: tuple[TopicSpec, ...]) -> list[TopicPartition]:
                return [TopicPartition(s.name, p) for s in specs for p in existing.get(s.name, ())]

            heads, tails = partitions(EGRESS_STATE_TOPICS), partitions(EGRESS_TOPICS)
            consumer.assign(heads + tails)
            await seek_to_start(consumer, [tp for tp in heads if tp not in self._positions])
            ends = await consumer.end_offsets([tp for tp in tails if tp not in self._positions])
            for tp, end in ends.items():
                replay = BACKLOG_REPLAY if tp.topic in (TEXT_ORIGINAL.name, TEXT_TRANSLATED.name) else 0
                consumer.seek(tp, max(0, end - replay))
            for tp, position in self._positions.items():
                consumer.seek(tp, position)
            if not self._positions:
                self.live_since = time.time()
            self.running = True
            async for message in consumer:
                self._positions[TopicPartition(message.topic, message.partition)] = message.offset + 1
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
        live = not record.timings or record.timings[-1].sent_at >= self.live_since
        if live and record.timings:
            _observe(record, time.time())
        for connection, messages in self._router.route(record, live):
            for message in messages:
                connection.outbox.put(message)


def _observe(record: Record, now: float) -> None:
    metrics.observe_last_stage(record)
    if isinstance(record, Transcript) and record.is_final:
        metrics.END_TO_END.labels("final_caption").observe(now - record.speech_ended_at)
    if isinstance(record, SynthesizedAudio) and record.chunk_index == 0:
        metrics.END_TO_END.labels("first_audio").observe(now - record.speech_ended_at)
