"""Ingest: what clients send, as records on the pipeline's topics.

Clients send 10 ms to 1 s of PCM per frame; the pipeline moves about 100 ms
per message (``Settings.frame_group_ms``) because Faust's throughput is a few
hundred messages per second per core, and 20 ms frames would be 50 per speaker.
:class:`Ingest` owns the gateway's one producer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas import SAMPLE_RATE, AudioFrame, Envelope, encode
from streams import metrics
from streams.topics import BY_RECORD

log = logging.getLogger(__name__)

BYTES_PER_SECOND = SAMPLE_RATE * 2
MAX_FRAME_BYTES = 32_000
"""One second of PCM: the largest client frame (PROTOCOL.md), itself allowed; larger closes the socket with 1009."""
MAX_MESSAGE_BYTES = 64 * 1024
"""The largest WebSocket message read at all: room for a second of PCM as a base64 ``audio`` command
(42,668 characters of base64); anything larger is closed with 1009 before it is read."""


class BadFrame(ValueError):
    """A client frame the protocol does not allow (answered with ``bad_frame``; the connection stays)."""


def check_frame(pcm: bytes) -> None:
    if not pcm:
        raise BadFrame("empty audio frame")
    if len(pcm) % 2:
        raise BadFrame(f"odd byte count {len(pcm)}: PCM is 16-bit samples")
    if len(pcm) > MAX_FRAME_BYTES:
        raise BadFrame(f"frame of {len(pcm)} bytes is over {MAX_FRAME_BYTES}")


class FrameGrouper:
    """Groups one speaker's PCM into ``AudioFrame`` messages of about ``group_ms``, numbered from 0."""

    def __init__(
        self,
        room_id: str,
        session_id: str,
        speaker_id: str,
        group_ms: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._room_id, self._session_id, self._speaker_id = room_id, session_id, speaker_id
        self._group_bytes = BYTES_PER_SECOND * group_ms // 1000
        self._clock = clock
        self._buffer = bytearray()
        self._started_at = 0.0
        self._captured_at = 0.0
        self._next_sequence = 0

    def push(self, pcm: bytes, language: str) -> list[AudioFrame]:
        """Add a client frame; returns the messages now complete."""
        check_frame(pcm)
        if not self._buffer:
            self._started_at = self._clock()
            # The frame arrives when its last sample was captured.
            self._captured_at = self._started_at - len(pcm) / BYTES_PER_SECOND
        self._buffer += pcm
        return [self._emit(language)] if len(self._buffer) >= self._group_bytes else []

    def flush(self, language: str, end_of_utterance: bool) -> list[AudioFrame]:
        """Send what is buffered now; with ``end_of_utterance``, also the marker that closes the utterance."""
        frames = [self._emit(language)] if self._buffer else []
        if end_of_utterance:
            now = self._clock()
            self._started_at, self._captured_at = now, now
            frames.append(self._emit(language, end_of_utterance=True))
        return frames

    def _emit(self, language: str, end_of_utterance: bool = False) -> AudioFrame:
        frame = AudioFrame(
            room_id=self._room_id,
            session_id=self._session_id,
            speaker_id=self._speaker_id,
            sequence_number=self._next_sequence,
            captured_at=self._captured_at,
            language=language,
            pcm=bytes(self._buffer),
            end_of_utterance=end_of_utterance,
        ).stamped("gateway", self._started_at, self._clock())
        self._next_sequence += 1
        self._buffer.clear()
        return frame


DELIVERY_TIMEOUT_S = 5.0
"""A record the broker has not taken within this fails: live audio that late is stale anyway."""
STALL_S = 4.0
"""A record pending this long means the broker is not taking records: new ones are refused with
:class:`BrokerUnavailable` at once, rather than blocking their socket until they time out. Longer than
a partition's leader takes to move when its broker dies (2.0–2.3 s on the three-broker test cluster):
records waiting for a new leader are late, not lost."""
QUEUE_WAIT_S = 2.0
"""The longest a socket waits for the producer to queue a record (for topic metadata, or for room in a
full batch). Within the audio a client may send ahead of real time (``audio_burst_s``, 3 s): a socket
that waits is not reading its client, whose audio then arrives in a burst."""
BATCH_BYTES = 1_000_000
"""What a partition's records may queue to while it has no leader. aiokafka queues one batch per
partition and blocks ``send`` once it is full: at its default of 16 KiB that is 0.4 s of one speaker's
audio (an ``audio.raw`` record of 100 ms is 3.5 KB), so a controller failover (3.7–4.5 s on the
three-broker test cluster) blocked sockets and dropped the speech in them. 1 MB, under the broker's
default ``message.max.bytes`` (1,048,588), holds 28 speaker-seconds: ``DELIVERY_TIMEOUT_S`` of five
speakers on one partition, delivered late rather than lost. With ``linger_ms=0`` a batch is this large
only while it waits."""
PROBE_EVERY_S = 1.0
"""While the broker is away, one record is let through this often to find out that it is back: what a
speaker says after the broker is back and before the next probe is dropped."""
PROBE_WAIT_S = 0.5
"""What a probe waits to be queued while the broker is away, rather than ``QUEUE_WAIT_S``: a socket
blocked that long every ``PROBE_EVERY_S`` would send its client's audio on in bursts past
``audio_burst_s``."""


class BrokerUnavailable(Exception):
    """The broker is not taking records now; the socket tells its client ``unavailable`` and stays open."""


class Ingest:
    """The gateway's producer: records go to their topics without waiting for delivery."""

    def __init__(self, bootstrap: str, max_in_flight: int, idempotent: bool = False) -> None:
        self._bootstrap = bootstrap
        self._idempotent = idempotent
        self._max_in_flight = max_in_flight
        self._producer: AIOKafkaProducer | None = None
        self._pending: dict[asyncio.Future[Any], float] = {}
        """Records sent and not yet delivered, with when they were sent: in sending order, oldest first."""
        self._failed = False
        """The last record failed (to queue, or to be delivered): the broker is away until one is delivered."""
        self._probe_at = 0.0
        """While the broker is away, one record is let through at a time from then, to find out that it is back."""
        self.lost = 0
        """Records dropped so far: refused, or sent and never delivered. A loss is a loss even when the
        broker is back before anyone looked (:mod:`web.outage` tells clients by this, not only by
        :meth:`available`)."""

    @property
    def running(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            linger_ms=0,
            acks="all",  # every in-sync replica: a leader killed after acking loses nothing
            enable_idempotence=self._idempotent,
            request_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000),
            max_batch_size=BATCH_BYTES,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def overloaded(self) -> bool:
        """Too many records still on their way to the broker: new audio is refused."""
        return len(self._pending) >= self._max_in_flight

    def available(self, now: float) -> bool:
        """Whether the broker is taking records: none pending for ``STALL_S``, and the last one delivered."""
        oldest = next(iter(self._pending.values()), now)  # on every record: the first is the oldest, O(1)
        return not self._failed and now - oldest < STALL_S

    async def deliver(self, *records: Envelope) -> None:
        """Send and wait until the broker has every record, for what must be known to have arrived (a
        presence renewal, a file's audio): a record queued is not yet delivered, and one queued while
        its partition's broker is away may never be. Raises :class:`BrokerUnavailable` when one is
        refused, fails, or is not delivered within ``DELIVERY_TIMEOUT_S``."""
        deliveries = await self.produce(*records)
        if not deliveries:
            return
        # asyncio.wait, not a timeout around gather: that would cancel the deliveries it gave up on,
        # and a record cancelled here would count as lost even if the broker took it later.
        done, waiting = await asyncio.wait(deliveries, timeout=DELIVERY_TIMEOUT_S)
        failed = [d for d in done if _failed(d)]
        if waiting or failed:
            raise BrokerUnavailable(f"{len(failed)} records failed, {len(waiting)} not delivered within "
                                    f"{DELIVERY_TIMEOUT_S:g} s")  # fmt: skip

    async def produce(self, *records: Envelope) -> list[asyncio.Future[Any]]:
        """Send without waiting for delivery; the in-flight count is what overload is judged by.
        Returns the records' deliveries.

        Raises :class:`BrokerUnavailable`, sending nothing more, while the broker is not taking
        records (but for one probe every ``PROBE_EVERY_S``), and within ``QUEUE_WAIT_S`` when the producer
        cannot even queue one.
        """
        assert self._producer is not None, "ingest is not started"
        deliveries = []
        for sent, record in enumerate(records):
            now = time.time()
            wait_s = QUEUE_WAIT_S
            if not self.available(now):
                if now < self._probe_at:
                    self._lose(len(records) - sent)
                    raise BrokerUnavailable(f"the broker has taken no record for {STALL_S:g} s")
                self._probe_at, wait_s = now + PROBE_EVERY_S, PROBE_WAIT_S
            topic = BY_RECORD[type(record)].name
            try:
                async with asyncio.timeout(wait_s):
                    delivery = await self._producer.send(topic, key=record.key.encode(), value=encode(record))
            except (KafkaError, TimeoutError) as exc:
                self._failed = True
                self._lose(len(records) - sent)
                raise BrokerUnavailable(repr(exc)) from exc
            self._pending[delivery] = time.time()
            delivery.add_done_callback(self._delivered)
            deliveries.append(delivery)
        return deliveries

    def _lose(self, records: int) -> None:
        self.lost += records
        metrics.DROPPED.labels("gateway", "unavailable").inc(records)

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        del self._pending[delivery]
        failed = _failed(delivery)
        if failed:
            self._lose(1)
        if failed and not self._failed:
            log.error("the broker is not taking records: %r", None if delivery.cancelled() else delivery.exception())
        elif self._failed and not failed:
            log.warning("the broker takes records again")
        self._failed = failed


def _failed(delivery: asyncio.Future[Any]) -> bool:
    """A finished delivery that did not get its record to the broker."""
    return delivery.cancelled() or delivery.exception() is not None
