"""Where a stage commits: never past a message held open (DESIGN.md: at least once).

A stage holds a speaker's audio messages unacknowledged while their utterance is open, and acks
another speaker's messages in the same partition as soon as they are done. Faust 0.15.3's
``Consumer._new_offset`` then commits past the held one (faust-streaming #606): a crash would lose
that utterance. ``streams.transport.Consumer`` owns the commit instead. Both are called here on
the same consumer state. Last, what a worker taking over a partition fetches before Faust's
rebalance has ended must reach its stream after it, not be thrown away with Faust's queues.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st
from intervaltree import IntervalTree

from streams.transport import Consumer

PARTITION = TP("audio.raw", 0)


@dataclass(frozen=True)
class Message:
    tp: TP
    offset: int


def consumer_state(committed: int | None, acked: list[int], held: list[int]) -> Any:
    state = SimpleNamespace(
        _acked=defaultdict(list),
        _acked_index=defaultdict(set),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None),
        _unacked_messages={Message(PARTITION, offset) for offset in held},
    )
    state._committed_offset[PARTITION] = committed
    state._acked[PARTITION] = sorted(acked)
    state._acked_index[PARTITION] = set(acked)
    return state


def test_faust_commits_past_a_message_held_open_and_ours_does_not() -> None:
    # Offset 10: speaker A's audio, held while A speaks. 11, 12: speaker B's, done and acked.
    assert faust_aiokafka.Consumer._new_offset(consumer_state(10, [11, 12], [10]), PARTITION) == 13
    assert Consumer._new_offset(consumer_state(10, [11, 12], [10]), PARTITION) is None


def test_interleaved_speakers_do_not_creep_the_commit_past_the_open_utterance() -> None:
    # A's frames (held) and B's (acked) alternate: Faust's commit creeps over A frame by frame.
    state = consumer_state(10, [11, 13, 15], [10, 12, 14])
    assert faust_aiokafka.Consumer._new_offset(state, PARTITION) == 12
    assert Consumer._new_offset(consumer_state(10, [11, 13, 15], [10, 12, 14]), PARTITION) is None


def test_once_the_utterance_is_done_everything_before_the_next_held_message_commits() -> None:
    state = consumer_state(10, [10, 11, 12, 13, 15], [14])
    assert Consumer._new_offset(state, PARTITION) == 14
    assert state._acked[PARTITION] == [15] and state._acked_index[PARTITION] == {15}
    state._unacked_messages.clear()
    assert Consumer._new_offset(state, PARTITION) == 16


@given(
    decisions=st.lists(st.booleans(), min_size=1, max_size=40),
    committed=st.integers(min_value=0, max_value=1000),
)
def test_the_commit_never_passes_a_held_message(decisions: list[bool], committed: int) -> None:
    """Any mix of held (True) and acked messages after the committed offset."""
    offsets = range(committed, committed + len(decisions))
    held = [o for o, is_held in zip(offsets, decisions, strict=True) if is_held]
    acked = [o for o, is_held in zip(offsets, decisions, strict=True) if not is_held]
    new = Consumer._new_offset(consumer_state(committed, acked, held), PARTITION)
    if new is not None:
        assert not held or new <= min(held)
        assert all(o in acked for o in range(committed, new))
    expected = min(held) if held else committed + len(decisions)
    assert (new or committed) == expected


class Rebalance:
    """What ``Consumer.getmany`` reads of a worker taking over a partition: Faust's recovery has
    completed once before (``completed`` stays set) and resumes flow while it reads changelogs, so
    only ``rebalancing`` says that Faust's last queue clear is still to come."""

    def __init__(self) -> None:
        self.rebalancing = True
        flow_control = SimpleNamespace(is_active=lambda: True)
        recovery = SimpleNamespace(completed=SimpleNamespace(is_set=lambda: True))
        self.tables = SimpleNamespace(changelog_topics=set(), recovery=recovery)
        self.flow_control = flow_control


async def test_messages_fetched_before_the_rebalance_ends_come_again_after_it(monkeypatch: Any) -> None:
    fetches: list[list[int]] = [list(range(131, 141)), list(range(141, 151)), list(range(131, 151))]

    async def faust_getmany(self: Any, timeout: float) -> Any:
        for offset in fetches.pop(0):
            yield PARTITION, SimpleNamespace(offset=offset)

    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", faust_getmany)
    consumer = Consumer.__new__(Consumer)
    consumer.app = app = Rebalance()  # type: ignore[assignment]
    consumer._fetch_again = {}
    consumer.seek = seek  # type: ignore[method-assign]

    async def fetch() -> list[int]:
        return [message.offset async for _, message in consumer.getmany(timeout=0.1)]

    # Fetched during the rebalance: a queue clear would throw these away, so none goes out.
    assert await fetch() == []
    app.rebalancing = False
    # The next fetch seeks back first; what it still returns from the old position is skipped.
    assert await fetch() == []
    assert sought == [(PARTITION, 131)]
    assert await fetch() == list(range(131, 151))
