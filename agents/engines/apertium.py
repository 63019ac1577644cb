"""Apertium (Debian ``apertium-*`` packages): rule-based translation, real output for the pairs it has.

Every direction the installed pairs have is a translator of the registry
(:mod:`agents.engines.registry`); where no direct pair exists, the registry
chains two of them through a pivot language.

``apertium eng-spa`` starts a dozen programs per call, each loading its
transducers: 0.3 s of CPU per caption, measured at 0.37 of this machine's 2
cores under 6 speaking rooms. So each pair's pipeline is started once and kept,
in null-flush mode (``-z``: every program flushes its output at a NUL, the way
Apertium's own API server runs it), and only Apertium's plain-text deformatter
and reformatter run per caption.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

MODES_DIR = Path("/usr/share/apertium/modes")
ISO_639_3 = {"eng": "en", "spa": "es", "cat": "ca", "fra": "fr", "por": "pt", "ita": "it", "glg": "gl", "oci": "oc",
             "eus": "eu", "ron": "ro", "nob": "nb", "nno": "nn", "dan": "da", "swe": "sv", "isl": "is",
             "epo": "eo"}  # fmt: skip
"""Apertium names a pair's languages in ISO 639-3 (``spa-ita``) or, in older pairs, ISO 639-1 (``fr-es``)."""
ISO_639_1 = frozenset(ISO_639_3.values())
TIMEOUT_S = 30.0
UNKNOWN_WORDS_UNMARKED = "-n"
"""The generator's flag that ``apertium -u`` passes: unknown words without a leading '*'."""


class _Pipeline:
    """One pair's programs, started once, fed one NUL-terminated text at a time."""

    def __init__(self, mode: Path) -> None:
        script = subprocess.run(["apertium-wblank-mode", "-z", str(mode)], capture_output=True, text=True, check=True)
        # The mode's script takes the generator's flag as $1 and the tagger's as $2, as `apertium` passes them.
        # Its own process group: closing it ends every program of the pipeline, not only the shell.
        self._process = subprocess.Popen(
            ["bash", "-c", script.stdout, "apertium", UNKNOWN_WORDS_UNMARKED, ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()


def _format(program: str, data: bytes) -> bytes:
    return subprocess.run([program], input=data, capture_output=True, check=True, timeout=TIMEOUT_S).stdout


def installed_modes(modes_dir: Path = MODES_DIR) -> dict[tuple[str, str], Path]:
    """(source, target) ISO 639-1 → the mode file of every translation direction installed.

    Variants (``cat-eng_US``, ``gl-pt-latin1``) and modes that are not a translation between two
    languages (``eco-fr-es``) are left out: their names do not split into two known codes.
    """
    if shutil.which("apertium-wblank-mode") is None:
        return {}
    pairs: dict[tuple[str, str], Path] = {}
    for mode in sorted(modes_dir.glob("*-*.mode")):
        codes = mode.stem.split("-")
        if len(codes) != 2:
            continue
        source, target = (ISO_639_3.get(code, code if code in ISO_639_1 else "") for code in codes)
        if source and target:
            pairs.setdefault((source, target), mode)
    return pairs


class ApertiumTranslator:
    """Every installed direction, each text through its direction's kept pipeline.

    A pipeline holds about 160 MB (PSS, measured on eng-spa), so at most ``max_pipelines`` are kept:
    starting one more closes the one used longest ago (a 5-language meeting with its pivots uses 14).
    """

    name = "apertium"

    def __init__(self, modes: dict[tuple[str, str], Path] | None = None, max_pipelines: int = 16) -> None:
        self._modes = installed_modes() if modes is None else modes
        if not self._modes:
            raise FileNotFoundError("no Apertium pair is installed (Debian packages apertium-*, see infra/dev)")
        self.pairs = frozenset(self._modes)
        self._max_pipelines = max_pipelines
        self._pipelines: OrderedDict[Path, _Pipeline] = OrderedDict()
        """Started pipelines, the one used longest ago first."""
        self._lock = threading.Lock()  # one text at a time through a pipeline

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        stream = _format("apertium-destxt", text.replace("\0", "").encode())
        out = {}
        with self._lock:
            for target in targets:
                translated = self._pipeline(self._modes[(source, target)]).run(stream)
                out[target] = " ".join(_format("apertium-retxt", translated).decode().split())
        return out

    def close(self) -> None:
        with self._lock:
            for pipeline in self._pipelines.values():
                pipeline.close()
            self._pipelines.clear()

    def _pipeline(self, mode: Path) -> _Pipeline:
        pipeline = self._pipelines.get(mode)
        if pipeline is None or not pipeline.alive:  # started on first use, again after it died
            if pipeline is None and len(self._pipelines) >= self._max_pipelines:
                self._pipelines.popitem(last=False)[1].close()
            pipeline = self._pipelines[mode] = _Pipeline(mode)
        self._pipelines.move_to_end(mode)
        return pipeline
