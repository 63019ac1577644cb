"""Apertium (Debian ``apertium-*`` packages): rule-based translation, real output for the pairs it has.

Where only the random test NLLB is installed, this is the engine that makes
en↔es captions mean something.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

MODES_DIR = Path("/usr/share/apertium/modes")
ISO_639_3 = {"eng": "en", "spa": "es", "cat": "ca", "fra": "fr", "por": "pt", "ita": "it", "glg": "gl", "oci": "oc",
             "eus": "eu", "ron": "ro", "nob": "nb", "nno": "nn", "dan": "da", "swe": "sv", "isl": "is"}  # fmt: skip


class ApertiumTranslator:
    name = "apertium"

    def __init__(self, executable: str = "apertium") -> None:
        path = shutil.which(executable)
        if path is None:
            raise FileNotFoundError("apertium is not installed (Debian package apertium-en-es)")
        self._executable = path
        self.pairs: dict[tuple[str, str], str] = {}
        """(source, target) ISO 639-1 → Apertium mode name."""
        for mode in sorted(MODES_DIR.glob("*-*.mode")):
            source, target = mode.stem.split("-", 1)
            if source in ISO_639_3 and target in ISO_639_3:
                self.pairs[(ISO_639_3[source], ISO_639_3[target])] = mode.stem

    @classmethod
    def installed(cls) -> bool:
        return shutil.which("apertium") is not None and any(MODES_DIR.glob("*-*.mode"))

    def covers(self, source: str, target: str) -> bool:
        return (source, target) in self.pairs

    def translate(self, text: str, source: str, targets: Sequence[str]) -> dict[str, str]:
        out = {}
        for target in targets:
            result = subprocess.run(
                [self._executable, "-u", self.pairs[(source, target)]],
                input=text, capture_output=True, text=True, check=True, timeout=30,
            )  # fmt: skip
            out[target] = " ".join(result.stdout.split())
        return out
