"""``dragoman bench soak``: does anything grow while meetings go on and on?

Rooms of :mod:`streams.cli.bench_load` run round after round (new rooms each round,
so per-room state must be freed) for ``--minutes``. For each minute it prints
the final-caption p50 and p90 of the utterances that ended in it, what did not
arrive, and the resident memory of every process (each worker's, the
gateway's, and ``up``'s embedded broker), read from their own ``/metrics``.
At the end it compares the last minute with the first (latency) and memory
after the first five minutes (workers), which is what a leak would move.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

from streams.cli.bench_load import run_rooms
from streams.cli.measures import metric_value, percentile

WARM_UP_MINUTES = 5
"""Memory is compared from here on: models, caches and arenas settle in the first minutes."""


def resident_mb(metrics_url: str, metric: str) -> float | None:
    resident = metric_value(metrics_url, metric)
    return None if resident is None else round(resident / 2**20, 1)


def bench_soak(
    url: str,
    secret: str,
    memory_urls: Mapping[str, tuple[str, str]],
    minutes: float,
    rooms: int,
    speech: Sequence[bytes],
    speak: str,
    listen: str,
) -> dict[str, object]:
    """``memory_urls``: process name → (its /metrics URL, the resident-memory metric there)."""
    started = time.time()
    latencies: dict[int, list[float]] = defaultdict(list)
    missing: dict[int, int] = defaultdict(int)
    memory: dict[int, dict[str, float | None]] = {}
    names = list(memory_urls)
    print(" | ".join(["minute", "final_p50_s", "final_p90_s", "finals", "missing", *[f"{n}_mb" for n in names]]))
    printed = 0
    while time.time() - started < minutes * 60:
        for room in asyncio.run(run_rooms(url, secret, rooms, speech, speak, listen)):
            for utterance in room.utterances:
                minute = int((utterance.ended_at - started) // 60)
                if utterance.final_at is not None:
                    latencies[minute].append(utterance.final_at - utterance.ended_at)
                elif speak not in utterance.announced:
                    missing[minute] += 1
        now_minute = int((time.time() - started) // 60)
        memory[now_minute] = {name: resident_mb(*memory_urls[name]) for name in names}
        for minute in range(printed, now_minute):  # minutes whose utterances are all in
            sample = memory.get(minute) or memory[now_minute]
            row = [minute, round(percentile(latencies[minute], 0.5), 3), round(percentile(latencies[minute], 0.9), 3),
                   len(latencies[minute]), missing[minute], *[sample[n] for n in names]]  # fmt: skip
            print(" | ".join(str(v) for v in row), flush=True)
        printed = max(printed, now_minute)
    done = sorted(m for m in latencies if m < printed)
    first, last = (done[0], done[-1]) if done else (0, 0)
    p90_first, p90_last = percentile(latencies[first], 0.9), percentile(latencies[last], 0.9)
    settled = sorted(m for m in memory if m >= WARM_UP_MINUTES)
    growth = {}
    if len(settled) >= 2:
        for name in names:
            before, after = memory[settled[0]][name], memory[settled[-1]][name]
            if before and after:
                growth[name] = round((after - before) / before * 100, 1)
    summary = {
        "bench": "soak",
        "minutes": minutes,
        "rooms": rooms,
        "final_p90_first_minute_s": round(p90_first, 3),
        "final_p90_last_minute_s": round(p90_last, 3),
        "p90_change_pct": round((p90_last - p90_first) / p90_first * 100, 1) if p90_first else None,
        "missing": sum(missing.values()),
        f"memory_growth_pct_after_minute_{WARM_UP_MINUTES}": growth,
    }
    print(json.dumps(summary))
    return summary
