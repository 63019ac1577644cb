"""Faust's aiokafka transport with the consumer fetch wait as a setting.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumers. Tansu (the
embedded broker) never wakes a waiting fetch when data arrives, so that wait
*is* each hop's delivery latency: 1.5 s per stage. This transport is
registered under the ``dragoman://`` URL scheme through Faust's own
``faust.transports`` entry point (see pyproject.toml), and sets the wait from
``Settings.fetch_max_wait_ms`` on every consumer Faust creates, owns where
the consumer commits (:meth:`Consumer._new_offset`), and tells its member id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, cast

import aiokafka
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streams.settings import get_settings


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # AIOKafkaConsumer keeps the constructor argument here until start()
        # builds its fetcher; tests/test_transport.py checks it reaches the fetcher.
        consumer._fetch_max_wait_ms = get_settings().fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's consumer, with the commit rule owned here (:meth:`_new_offset`) and delivery made
    at least once across rebalances (:meth:`getmany`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fetch_again: dict[TP, tuple[int, bool]] = {}
        """Per partition: the first message held back during a rebalance, and whether it was sought."""

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's fetch loop, minus messages that Faust would throw away.

        Faust ends a rebalance's table recovery (``Recovery.on_recovery_completed``) by resuming
        the partitions, seeking them to their committed offsets, and then resuming flow control,
        which clears every stream's queue. Messages fetched after that seek and queued before the
        clear are thrown away and never fetched again. A translate worker taking over lost the
        final it had to translate; an stt replica taking over lost the utterance in progress (the
        seek waits on the broker, and the agent took the first frames meanwhile).

        Here stream messages (not changelogs: recovery reads those) are held back until the
        rebalance has ended, which Faust marks after its last clear, and each partition is sought
        back to the first of them. Flow control and ``recovery.completed`` do not say this:
        recovery resumes flow while it reads changelogs, and ``completed`` stays set after a
        worker's first recovery.
        """
        tables = cast(TableManager, self.app.tables)
        if self._flowing(tables):  # at once, not when the partition's next message comes: a speaker may have stopped
            for tp, (first, sought) in list(self._fetch_again.items()):
                if not sought:
                    self._fetch_again[tp] = (first, True)
                    await self.seek(tp, first)
        changelogs = tables.changelog_topics  # a set built anew on each access: once per fetch, not per message
        async for tp, message in super().getmany(timeout):
            if tp.topic in changelogs:  # what recovery itself reads
                yield tp, message
                continue
            if not self._flowing(tables):
                first, _ = self._fetch_again.get(tp, (message.offset, False))
                self._fetch_again[tp] = (min(first, message.offset), False)  # Faust may have sought back meanwhile
                continue
            if tp in self._fetch_again:
                first, _ = self._fetch_again[tp]
                if message.offset > first:  # fetched before the seek back: it comes again after the held ones
                    continue
                del self._fetch_again[tp]
            yield tp, message

    def _flowing(self, tables: TableManager) -> bool:
        return not self.app.rebalancing and self.app.flow_control.is_active() and tables.recovery.completed.is_set()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:  # whoever owns it next starts from its committed offset
            self._fetch_again.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    @property
    def member_id(self) -> str:
        """This worker's id in its consumer group (Faust's own driver reads the generation there)."""
        thread = cast(ConsumerThread, self._thread)
        return str(thread._ensure_consumer()._coordinator.member_id)

    def _new_offset(self, tp: TP) -> int | None:
        """Where to commit ``tp``: the first offset not yet done, and never past a held message.

        Faust 0.15.3 commits the first run of consecutive acknowledged offsets once it starts at
        most one past the committed offset, so a message held open at exactly that offset (one
        speaker's utterance, while another speaker's messages in the same partition are acked) is
        committed past and lost to a crash (faust-streaming #606, PR #707). Here every message the
        consumer handed out and nobody acknowledged yet bounds the commit.
        """
        acked = self._acked[tp]
        if not acked:
            return None
        held = [message.offset for message in self._unacked_messages if message.tp == tp]
        end = max(acked) + 1
        if held:
            end = min(end, min(held))
        done = [offset for offset in acked if offset < end]
        if not done:
            return None
        acked[:] = [offset for offset in acked if offset >= end]
        self._acked_index[tp].difference_update(done)
        return end

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Producer(faust_aiokafka.Producer):
    """Faust's producer, idempotent where the broker allows it (``DRAGOMAN_IDEMPOTENT_PRODUCERS``):
    Faust turns idempotence on only inside its transactions."""

    def _settings_extra(self) -> Mapping[str, Any]:
        if get_settings().idempotent_producers:
            return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}
        return super()._settings_extra()


class Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = Consumer
    Producer: ClassVar[Any] = Producer
