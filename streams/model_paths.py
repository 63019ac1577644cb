"""Where models live under ``Settings.models_dir``: shared by the engines that load them and the
gateway that reports on them (which must not import ``agents/``)::

    whisper/<name>/            CTranslate2 Whisper (model.bin, config, tokenizer, vocabulary)
    nllb/<name>/               Hugging Face NLLB checkpoint (M2M100)
    nllb/<name>-ct2/           the same, converted to CTranslate2 int8 (preferred when present)
    piper/<voice>.onnx(.json)  Piper voices
    coqui/<language>/          coqui-tts model dirs (model.pth, config.json)
    vad/silero_vad.onnx        Silero VAD
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TEST_MODEL_MARKER = "DRAGOMAN_TEST_MODEL"
"""A file in a model directory built by ``build-test-models``: real architecture, random weights."""


@dataclass(frozen=True)
class ModelPaths:
    root: Path

    def whisper(self, name: str) -> Path:
        return self.root / "whisper" / name

    def nllb(self, name: str) -> Path:
        return self.root / "nllb" / name

    def nllb_ct2(self, name: str) -> Path:
        return self.root / "nllb" / f"{name}-ct2"

    def piper(self, voice: str) -> Path:
        return self.root / "piper" / f"{voice}.onnx"

    def coqui(self, language: str) -> Path:
        return self.root / "coqui" / language

    @property
    def vad(self) -> Path:
        return self.root / "vad" / "silero_vad.onnx"


def is_test_model(model_dir: Path) -> bool:
    return (model_dir / TEST_MODEL_MARKER).exists()
