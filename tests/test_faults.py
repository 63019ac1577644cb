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
from streams.bench_load import PAUSE_S, run_rooms, summarize
from streams.cli import STAGES, bench_speech
from tests.conftest import Meeting, spares_warm, worker

pytestmark = pytest.mark.integration

UTTERANCES = 12
JOIN_S = 2.0
"""run_rooms lets the room form for this long before the speaker starts."""
KILL_DURING = {"stt": (4, 0.5), "translate": (4, 1.0), "tts": (4, 1.2)}
"""When each stage is killed: (utterance, fraction of it). stt in the middle of the utterance's audio,
translate and tts just after its speech ended, while its final is being translated or spoken."""


async def first_processed(system: Meeting, stage: str, killed_at: float) -> float:
    """Seconds from the kill until the stage's new worker has processed a message."""
    url = f"http://127.0.0.1:{system.worker_port + STAGES.index(stage)}/metrics"
    pattern = re.compile(rf'^dragoman_processed_total\{{stage="{stage}"\}} (\S+)$', re.M)
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    found = pattern.search(await response.text())
                if found and float(found.group(1)) > 0:
                    return time.time() - killed_at
            except aiohttp.ClientError:
                pass  # nobody serves the port between the kill and the takeover
            await asyncio.sleep(0.05)


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
        run_rooms(production.url, production.secret, 1, speech, "en", "es"), crash()
    )
    outcome = summarize([room], None)
    delivered = {
        "finals": sum(u.final_at is not None for u in room.utterances),
        "translations": sum(u.translated_at is not None for u in room.utterances),
        "speech": sum(u.audio_ended_at is not None for u in room.utterances),
    }
    announced = sum(bool(u.announced) for u in room.utterances)
    print(f"{stage} killed: restart {restart_s:.2f} s; delivered {delivered}, announced {announced} of {UTTERANCES}")
    timeline = [(round(u.ended_at - killed_at[0], 1), u.final_at, u.translated_at, u.audio_ended_at, u.announced)
                for u in room.utterances]  # fmt: skip
    assert (outcome["finals_missing"], outcome["translations_missing"], outcome["audio_missing"]) == (0, 0, 0), timeline
