"""A worker SIGKILLed mid-meeting under `up`'s defaults loses no utterance (issue #10).

For each live stage in turn, a 12-utterance meeting (one English speaker streaming recordings in
real time, a Spanish listener, a captions viewer, all through the gateway as PROTOCOL.md clients)
runs while that stage's only worker is killed with SIGKILL. Every utterance must still reach the
clients, late if it must, or be announced as dropped: its English final, its Spanish translation
and its Spanish speech (through ``audio_end``). Each test prints the stage's restart time: from the
kill to the first message its replacement processed (the warm spare takes over, and the supervisor
removes the dead member from its group so the group rebalances at once).
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from schemas import SAMPLE_RATE
from streams.cli.bench import bench_speech
from streams.cli.bench_load import PAUSE_S, Room, run_rooms, summarize
from streams.cli.common import worker_port
from tests.conftest import Meeting, running_up, spares_warm, worker

pytestmark = pytest.mark.integration

UTTERANCES = 12
JOIN_S = 2.0
"""run_rooms lets the room form for this long before the speaker starts."""
LATE_S = 30.0
"""How long after the meeting an utterance may still arrive: work redone after a crash is late, not lost."""
KILL_DURING = {"stt": (4, 0.5), "translate": (4, 1.0), "tts": (4, 1.2)}
"""When each stage is killed: (utterance, fraction of it). stt in the middle of the utterance's audio,
translate and tts just after its speech ended, while its final is being translated or spoken."""


def timeline(room: Room, killed_at: float) -> str:
    """Each utterance's fate, one line each, relative to the kill: what a failure needs to be read."""

    def after(ended_at: float, at: float | None) -> str:
        return "missing" if at is None else f"+{at - ended_at:.2f} s"

    return "\n".join(
        f"utterance {i}: ended {u.ended_at - killed_at:+.1f} s from the kill; final {after(u.ended_at, u.final_at)}, "
        f"translation {after(u.ended_at, u.translated_at)}, speech {after(u.ended_at, u.audio_ended_at)}, "
        f"announced {sorted(u.announced)}{', speaker told it was dropped' if room.told_dropped(u) else ''}"
        for i, u in enumerate(room.utterances)
    )


async def processed(system: Meeting, stage: str, replica: int = 0) -> float | None:
    """Messages a worker of ``stage`` processed (None while nobody serves its port)."""
    url = f"http://127.0.0.1:{worker_port(system.worker_port, stage, replica)}/metrics"
    pattern = re.compile(rf'^dragoman_processed_total\{{stage="{stage}"\}} (\S+)$', re.M)
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            found = pattern.search(await response.text())
    except aiohttp.ClientError:
        return None
    return float(found.group(1)) if found else 0.0


async def first_processed(system: Meeting, stage: str, killed_at: float, replica: int = 0, above: float = 0) -> float:
    """Seconds from the kill until the worker of ``stage`` (``replica``) has processed more than
    ``above`` messages: the dead one's replacement, or the replica its partitions moved to."""
    while (count := await processed(system, stage, replica)) is None or count <= above:
        await asyncio.sleep(0.05)
    return time.time() - killed_at


@pytest.mark.parametrize("stage", ["stt", "translate", "tts"])
async def test_a_stage_killed_mid_meeting_loses_no_utterance(production: Meeting, stage: str) -> None:
    await spares_warm(production)
    speech, _ = bench_speech("en", UTTERANCES)
    assert len(speech) == UTTERANCES
    index, fraction = KILL_DURING[stage]
    speaking_s = len(speech[index]) / 2 / SAMPLE_RATE
    kill_after = JOIN_S + sum(len(p) / 2 / SAMPLE_RATE + PAUSE_S for p in speech[:index]) + fraction * speaking_s

    killed_at: list[float] = []

    async def crash() -> float:
        await asyncio.sleep(kill_after)
        victim = worker(production, stage)
        killed_at.append(time.time())
        victim.kill()
        restart_s = await asyncio.wait_for(first_processed(production, stage, killed_at[0]), timeout=60)
        assert worker(production, stage).pid != victim.pid
        return restart_s

    [room], restart_s = await asyncio.gather(
        run_rooms(production.url, production.secret, 1, speech, "en", "es", LATE_S), crash()
    )
    outcome = summarize([room], None)
    delivered = {
        "finals": sum(u.final_at is not None for u in room.utterances),
        "translations": sum(u.translated_at is not None for u in room.utterances),
        "speech": sum(u.audio_ended_at is not None for u in room.utterances),
    }
    announced = sum(bool(u.announced) for u in room.utterances)
    print(f"{stage} killed: restart {restart_s:.2f} s; delivered {delivered}, announced {announced} of {UTTERANCES}")
    missing = (outcome["finals_missing"], outcome["translations_missing"], outcome["audio_missing"])
    assert missing == (0, 0, 0), timeline(room, killed_at[0])


async def test_with_replicas_a_crash_costs_a_rebalance() -> None:
    """`up --replicas 2`: the stt worker serving the meeting is SIGKILLed mid-utterance; its partitions
    move to the other replica (the dead member is removed from the group at once), and the dead one is
    started again cold and joins, which is a second rebalance. Every utterance must still arrive."""
    speech, _ = bench_speech("en", 8)
    index, fraction = 3, 0.5
    kill_after = JOIN_S + sum(len(p) / 2 / SAMPLE_RATE + PAUSE_S for p in speech[:index])
    kill_after += fraction * len(speech[index]) / 2 / SAMPLE_RATE
    with running_up("up-replicas.log", {"DRAGOMAN_REPLICAS": "2"}) as system:
        assert worker(system, "stt", 1).pid != worker(system, "stt", 0).pid

        killed_at: list[float] = []

        async def crash() -> tuple[float, float]:
            await asyncio.sleep(kill_after)
            counts = [await processed(system, "stt", replica) or 0.0 for replica in (0, 1)]
            serving = 0 if counts[0] > counts[1] else 1  # the only room is on one replica's partitions
            victim = worker(system, "stt", serving)
            killed_at.append(time.time())
            victim.kill()
            other = 1 - serving
            moved_s = await asyncio.wait_for(first_processed(system, "stt", killed_at[0], other, counts[other]), 60)
            while await processed(system, "stt", serving) is None:  # its replacement loads its models
                await asyncio.sleep(0.2)
            return moved_s, time.time() - killed_at[0]

        [room], (moved_s, back_s) = await asyncio.gather(
            run_rooms(system.url, system.secret, 1, speech, "en", "es", LATE_S), crash()
        )
    outcome = summarize([room], None)
    announced = sum(bool(u.announced) for u in room.utterances)
    print(f"stt replica killed: the other processed {moved_s:.2f} s later; its replacement up {back_s:.1f} s later; "
          f"missing {outcome['finals_missing']}/{outcome['translations_missing']}/{outcome['audio_missing']}, "
          f"announced {announced} of {len(speech)}")  # fmt: skip
    missing = (outcome["finals_missing"], outcome["translations_missing"], outcome["audio_missing"])
    assert missing == (0, 0, 0), timeline(room, killed_at[0])
