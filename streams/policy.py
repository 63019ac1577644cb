"""A stage's error policy: every failure is a declared kind (:mod:`streams.stage`), handled one way.

- :class:`~streams.stage.Dropped`: on purpose; counted by reason, announced, never retried.
- :class:`~streams.stage.Transient`, and any failure that declares nothing: retried with backoff
  (stamina), then dead-lettered with every attempt counted.
- :class:`~streams.stage.Failed`: the transform gave up after its own retries; announced and
  dead-lettered at once (a retry would be a duplicate).
- :class:`~streams.stage.Fatal`: the process cannot go on; it exits, and the supervisor starts it
  again (its unacknowledged messages come again to whoever takes over).

Nothing here knows Faust or Kafka: a message is what :class:`LoggedMessage` says, and the dead
letters go to a callable, so tests drive every path without a broker.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NoReturn, Protocol

import stamina

from schemas import DeadLetter, Envelope
from streams import metrics
from streams.dlq import prior_attempts
from streams.stage import Dropped, Failed, Fatal

log = logging.getLogger(__name__)

ATTEMPTS = 3
WAIT_INITIAL_S = 0.2
WAIT_MAX_S = 1.0
"""Three attempts, about 0.2 s and 0.4 s apart (with up to 0.1 s of jitter): an engine that lost its
process gets it back, and the partition waits under a second for a message that keeps failing."""
EXIT_FATAL = 70
"""The exit status of a worker that met a :class:`~streams.stage.Fatal` failure (EX_SOFTWARE)."""

Send = Callable[[Envelope, float, float], Awaitable[None]]
"""Stamp and send a record: (record, received at, compute seconds)."""


class LoggedMessage(Protocol):
    """Where a message came from, as a dead letter records it (a Faust event's ``message`` is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None: ...


def _retried(error: Exception) -> bool:
    """Everything but the kinds that say what to do instead."""
    return not isinstance(error, Dropped | Failed | Fatal)


class ErrorPolicy:
    def __init__(
        self,
        stage: str,
        dead_letters: Callable[[DeadLetter], Awaitable[None]],
        attempts: int = ATTEMPTS,
        wait_initial_s: float = WAIT_INITIAL_S,
        exit_process: Callable[[int], NoReturn] = os._exit,
    ) -> None:
        self.stage = stage
        self._dead_letters = dead_letters
        self._attempts = attempts
        self._wait_initial_s = wait_initial_s
        self._exit = exit_process

    async def run(self, message: LoggedMessage, work: Callable[[], Awaitable[None]], announce: Send) -> None:
        """Do ``work`` for ``message`` under the policy."""
        attempt = 0
        try:
            retries = stamina.retry_context(on=_retried, attempts=self._attempts, timeout=None,
                                            wait_initial=self._wait_initial_s, wait_max=WAIT_MAX_S,
                                            wait_jitter=self._wait_initial_s / 2)  # fmt: skip
            async for retry in retries:
                with retry:
                    attempt += 1
                    if attempt > 1:
                        metrics.RETRIES.labels(self.stage).inc()
                    await work()
        except Dropped as drop:
            metrics.DROPPED.labels(self.stage, drop.reason).inc()
            for announcement in drop.announcements:
                await announce(announcement, time.time(), 0.0)
        except Failed as failure:
            for announcement in failure.announcements:
                await announce(announcement, time.time(), 0.0)
            await self.dead_letter(message, failure.cause, attempts=attempt)
        except Fatal as fatal:
            log.critical("%s cannot go on: %s", self.stage, fatal, extra=_key_of(message))
            self._exit(EXIT_FATAL)
        except Exception as exc:  # noqa: BLE001 - retried above; what is left goes to the DLQ
            await self.dead_letter(message, exc, attempts=attempt)

    async def dead_letter(self, message: LoggedMessage, error: BaseException, attempts: int) -> None:
        """Append ``message`` to the DLQ; a re-driven one (see streams.dlq) counts its earlier attempts."""
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
            extra=_key_of(message),
        )  # fmt: skip
        await self._dead_letters(letter)


def _key_of(message: LoggedMessage) -> dict[str, str]:
    """A message's key for a log line's fields: the room id of every meeting topic."""
    return {"room_id": message.key.decode("utf-8", "replace")} if isinstance(message.key, bytes) else {}
