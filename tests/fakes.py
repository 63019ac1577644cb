"""Fake engines for tests only: deterministic stand-ins behind the real Protocols."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence

import numpy as np

from agents.engines.protocols import Float32Audio, Recognition

SENTENCE = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "runs", "far", "away"]


class GrowingRecognizer:
    """Hears one word per 0.4 s of audio, and gets the newest word wrong (as a real decoder
    does with a word cut mid-way), so LocalAgreement has something to disagree on. Its first
    ``fail_times`` calls raise (``RuntimeError``; ``math.inf``: every call), as a model whose
    device went away does; each call takes ``delay_s``, as a model's decode does."""

    name = "fake"

    def __init__(self, fail_times: float = 0, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[int, str]] = []
        self.failures = 0
        self._fail_times = fail_times
        self._delay_s = delay_s

    def supports(self, language: str) -> bool:
        return True

    def transcribe(self, audio: Float32Audio, language: str) -> Recognition:
        time.sleep(self._delay_s)
        if self.failures < self._fail_times:
            self.failures += 1
            raise RuntimeError("recognizer failed on demand")
        self.calls.append((len(audio), language))
        words = list(itertools.islice(itertools.cycle(SENTENCE), max(1, int(len(audio) / 16_000 / 0.4))))
        return Recognition(" ".join([*words[:-1], words[-1][:2] + "-"]))


class EchoTranslator:
    """Writes ``[target] text``; its first ``fail_times`` calls raise, and each takes ``delay_s``."""

    name = "echo"

    def __init__(self, fail_times: float = 0, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        self._fail_times = fail_times
        self._delay_s = delay_s

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        time.sleep(self._delay_s)
        if self._fail_times > 0:
            self._fail_times -= 1
            raise RuntimeError("translator failed on demand")
        self.calls.append((text, source, tuple(targets)))
        return {target: f"[{target}] {text}" for target in targets}


class ToneSynthesizer:
    """0.7 s of a 440 Hz tone per sentence; its first ``fail_times`` calls raise."""

    name = "tone"

    def __init__(self, languages: set[str], fail_times: float = 0) -> None:
        self.languages = languages
        self._fail_times = fail_times

    def supports(self, language: str) -> bool:
        return language in self.languages

    def synthesize(self, text: str, language: str) -> Iterator[Float32Audio]:
        if self._fail_times > 0:
            self._fail_times -= 1
            raise RuntimeError("synthesizer failed on demand")
        for _sentence in filter(None, text.split(".")):
            t = np.arange(int(16_000 * 0.7)) / 16_000
            yield (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


class PairTranslator:
    """An engine with a fixed set of directions that writes ``[target] text``; ``fail_times`` calls raise
    first (``RuntimeError``), as an engine that lost its process does."""

    def __init__(self, name: str, pairs: set[tuple[str, str]], fail_times: int = 0) -> None:
        self.name = name
        self.pairs = frozenset(pairs)
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        self.closed = False
        self._fail_times = fail_times

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        self.calls.append((text, source, tuple(targets)))
        if self._fail_times > 0:
            self._fail_times -= 1
            raise RuntimeError(f"{self.name} failed on demand")
        assert all((source, t) in self.pairs for t in targets), (source, targets)
        return {target: f"[{target}] {text}" for target in targets}

    def close(self) -> None:
        self.closed = True
