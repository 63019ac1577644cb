"""What the benches measure with: percentiles of latencies, a value read off a Prometheus endpoint,
the CPU processes and the machine used while a round ran, and a recording trimmed to its speech so
that its end of speech is exact."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import psutil

from schemas import SAMPLE_RATE


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) if values else float("nan")


def metric_value(metrics_url: str, metric: str) -> float | None:
    """An unlabelled series' value on a Prometheus endpoint; None when it cannot be read."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    found = re.search(rf"^{metric} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


PROCESS_CPU = "process_cpu_seconds_total"
"""A process's CPU seconds on its own /metrics (prometheus-client's process collector)."""


@dataclass
class CpuUse:
    """Cores used over a block (:func:`cpu_use`): by each process whose CPU-seconds counter was given
    (``None`` where it could not be read, as of a worker not started), and by the whole machine,
    whatever runs on it."""

    processes: list[float | None] = field(default_factory=list)
    machine: float = float("nan")


@contextmanager
def cpu_use(counters: Sequence[tuple[str, str]]) -> Iterator[CpuUse]:
    """Measure :class:`CpuUse` over the ``with`` block: each (/metrics URL, CPU-seconds counter) read
    before and after, and the machine's busy share (psutil's ``cpu_percent`` over the block, in cores)."""
    use = CpuUse()
    before = [metric_value(url, counter) for url, counter in counters]
    psutil.cpu_percent()  # the machine's interval starts here
    started = time.monotonic()
    yield use
    wall_s = time.monotonic() - started
    use.machine = psutil.cpu_percent() / 100 * (psutil.cpu_count() or 1)
    after = [metric_value(url, counter) for url, counter in counters]
    use.processes = [None if a is None or b is None else (a - b) / wall_s for b, a in zip(before, after, strict=True)]


def trim_silence(pcm: bytes, threshold: float = 0.05) -> bytes:
    """The recording from its first to its last 10 ms whose RMS is over ``threshold`` × the loudest."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    hop = SAMPLE_RATE // 100
    rms = np.sqrt(np.mean(samples[: len(samples) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms > threshold * rms.max())
    return pcm[loud[0] * hop * 2 : (loud[-1] + 1) * hop * 2]
