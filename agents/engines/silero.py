"""Silero VAD (ONNX, CPU), the model the ``silero-vad`` wheel ships, loaded from the models dir."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from silero_vad.utils_vad import OnnxWrapper

from agents.engines.protocols import Float32Audio, VadStream
from schemas import SAMPLE_RATE


class _SileroStream:
    def __init__(self, model: object) -> None:
        self._model = model

    def speech_probability(self, window: Float32Audio) -> float:
        with torch.no_grad():
            return float(self._model(torch.from_numpy(np.ascontiguousarray(window)), SAMPLE_RATE))  # type: ignore[operator]


class SileroVad:
    """One ONNX session shared by all speakers; each speaker gets its own recurrent state."""

    window_samples = 512  # what Silero takes at 16 kHz

    def __init__(self, model_path: Path) -> None:
        self._model = OnnxWrapper(str(model_path), force_onnx_cpu=True)

    def stream(self) -> VadStream:
        # A shallow copy shares the (thread-safe) ONNX session; reset_states
        # gives the copy state tensors of its own.
        model = copy.copy(self._model)
        model.reset_states()
        return _SileroStream(model)
