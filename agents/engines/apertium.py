"""Apertium (Debian ``apertium-*`` packages): rule-based translation, real output for the pairs it has.

Where only the random test NLLB is installed, this is the engine that makes
en↔es captions mean something.

``apertium eng-spa`` starts a dozen programs per call, each loading its
transducers: 0.3 s of CPU per caption, measured at 0.37 of this machine's 2
cores under 6 speaking rooms. So each pair's pipeline is started once and kept,
in null-flush mode (``-z``: every program flushes its output at a NUL, the way
Apertium's own API server runs it), and only Apertium's plain-text deformatter
and reformatter run per caption.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

MODES_DIR = Path("/usr/share/apertium/modes")
ISO_639_3 = {"eng": "en", "spa": "es", "cat": "ca", "fra": "fr", "por": "pt", "ita": "it", "glg": "gl", "oci": "oc",
             "eus": "eu", "ron": "ro", "nob": "nb", "nno": "nn", "dan": "da", "swe": "sv", "isl": "is"}  # fmt: skip
TIMEOUT_S = 30.0
UNKNOWN_WORDS_UNMARKED = "-n"
"""The generator's flag that ``apertium -u`` passes: unknown words without a leading '*'."""


class _Pipeline:
    """One pair's programs, started once, fed one NUL-terminated text at a time."""

    def __init__(self, mode: Path) -> None:
        script = subprocess.run(["apertium-wblank-mode", "-z", str(mode)], capture_output=True, text=True, check=True)
        # The mode's script takes the generator's flag as $1 and the tagger's as $2, as `apertium` passes them.
        self._process = subprocess.Popen(
            ["bash", "-c", script.stdout, "apertium", UNKNOWN_WORDS_UNMARKED, ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def run(self, stream: bytes) -> bytes:
        """Apertium stream format in, through the NUL that ends its translation out."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(stream + b"\0")
        self._process.stdin.flush()
        out = self._process.stdout.fileno()
        received = b""
        while not received.endswith(b"\0"):
            if not select.select([out], [], [], TIMEOUT_S)[0]:
                self.close()
                raise TimeoutError(f"apertium gave no translation in {TIMEOUT_S:g} s")
            chunk = os.read(out, 65536)
            if not chunk:
                raise RuntimeError("the apertium pipeline exited")
            received += chunk
        return received[:-1]

    def close(self) -> None:
        self._process.kill()
        self._process.wait()


def _format(program: str, data: bytes) -> bytes:
    return subprocess.run([program], input=data, capture_output=True, check=True, timeout=TIMEOUT_S).stdout


class ApertiumTranslator:
    name = "apertium"

    def __init__(self) -> None:
        if shutil.which("apertium-wblank-mode") is None:
            raise FileNotFoundError("apertium is not installed (Debian package apertium-en-es)")
        self.pairs: dict[tuple[str, str], Path] = {}
        """(source, target) ISO 639-1 → the Apertium mode file."""
        for mode in sorted(MODES_DIR.glob("*-*.mode")):
            source, target = mode.stem.split("-", 1)
            if source in ISO_639_3 and target in ISO_639_3:
                self.pairs[(ISO_639_3[source], ISO_639_3[target])] = mode
        self._pipelines: dict[Path, _Pipeline] = {}
        self._lock = threading.Lock()  # one text at a time through a pipeline

    @classmethod
    def installed(cls) -> bool:
        return shutil.which("apertium-wblank-mode") is not None and any(MODES_DIR.glob("*-*.mode"))

    def covers(self, source: str, target: str) -> bool:
        return (source, target) in self.pairs

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        stream = _format("apertium-destxt", text.replace("\0", "").encode())
        out = {}
        with self._lock:
            for target in targets:
                translated = self._pipeline(self.pairs[(source, target)]).run(stream)
                out[target] = " ".join(_format("apertium-retxt", translated).decode().split())
        return out

    def _pipeline(self, mode: Path) -> _Pipeline:
        pipeline = self._pipelines.get(mode)
        if pipeline is None or not pipeline.alive:  # started on first use, again after it died
            pipeline = self._pipelines[mode] = _Pipeline(mode)
        return pipeline
