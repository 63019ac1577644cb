"""Faust's aiokafka transport with the consumer fetch wait as a setting.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumers. Tansu (the
embedded broker) never wakes a waiting fetch when data arrives, so that wait
*is* each hop's delivery latency: 1.5 s per stage. This transport is
registered under the ``dragoman://`` URL scheme through Faust's own
``faust.transports`` entry point (see pyproject.toml), and sets the wait from
``Settings.fetch_max_wait_ms`` on every consumer Faust creates, and owns where
the consumer commits (:meth:`Consumer._new_offset`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.settings import get_settings


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # AIOKafkaConsumer keeps the constructor argument here until start()
        # builds its fetcher; tests/test_transport.py checks it reaches the fetcher.
        consumer._fetch_max_wait_ms = get_settings().fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
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


class Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = Consumer
