"""What the benches measure with: percentiles of latencies, a value read off a Prometheus endpoint,
and a recording trimmed to its speech so that its end of speech is exact."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Sequence

import numpy as np

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


def trim_silence(pcm: bytes, threshold: float = 0.05) -> bytes:
    """The recording from its first to its last 10 ms whose RMS is over ``threshold`` × the loudest."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    hop = SAMPLE_RATE // 100
    rms = np.sqrt(np.mean(samples[: len(samples) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms > threshold * rms.max())
    return pcm[loud[0] * hop * 2 : (loud[-1] + 1) * hop * 2]
