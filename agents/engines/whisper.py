"""Whisper through WhisperX (faster-whisper / CTranslate2 backend), from local model dirs.

Streaming recognition calls the CTranslate2 model under faster-whisper
directly, with the utterance padded to the smallest of :data:`BUCKETS_S`
that holds it: faster-whisper's own ``transcribe`` always pads to 30 s, and
the encoder's cost follows its input (tiny.en on 2 cores: 0.50 s over 30 s,
0.08 s over 10 s). Trimming to the audio exactly makes the decoder loop. Files go through
WhisperX's batched pipeline. Models load with ``whisperx.load_model`` from
directories under ``models_dir/whisper`` (see ``dragoman models prepare``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from agents.engines.protocols import Float32Audio, Recognition
from schemas import SAMPLE_RATE

ENGLISH_ONLY_SUFFIX = ".en"
BUCKETS_S = (10, 15, 20, 30)
"""Encoder input lengths, in seconds. Measured on 10 recorded prompts per language against the fixed 30 s
window: a third of the time for tiny.en (WER 0.060 both) and two thirds for base (0.455 vs 0.458). The
padding is silent *audio*, as in Whisper's training: zeros in feature space instead cost tiny.en 0.035 WER
on short prompts, and 5 s buckets lost words on them (``dragoman bench engines`` reports the figures)."""
FRAMES_PER_SECOND = 100
TOKENS_PER_SECOND = 10
"""A bound on decoded tokens per second of audio (speech is 3–5): a looping decoder stops there."""
EARLY_END_TOKENS_PER_S = 1.5
EARLY_END_AFTER_S = 4.0
"""Without timestamp tokens Whisper's decoder sometimes ends after the first sentence of longer audio:
tiny.en heard 6 to 15 s of a recorded prompt as "Thank you for calling Super Awesome Company." and
nothing more, 9 text tokens of up to 50. An utterance has no pause longer than the VAD's hangover, so it
holds 3 to 5 tokens a second, in any script (tokens, not words: Chinese or Japanese has no spaces to
count): a hypothesis of fewer than 1.5 a second over more than 4 s of audio ended early, and is decoded
again with its own text as the prefix, which the decoder continues (measured: that prompt from 8 to 15 s
was then heard to its end)."""


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def bucketed(audio: Float32Audio) -> Float32Audio:
    """``audio`` padded with silence (or, past 30 s, cut) to the smallest bucket that holds it."""
    seconds = next((s for s in BUCKETS_S if s * SAMPLE_RATE >= len(audio)), BUCKETS_S[-1])
    kept = audio[: seconds * SAMPLE_RATE]
    return np.pad(kept, (0, seconds * SAMPLE_RATE - len(kept)))


class WhisperRecognizer:
    """Multilingual Whisper for every language, and an English-only model for English when given."""

    def __init__(
        self, multilingual_dir: Path, english_dir: Path | None, device: str, compute_type: str, threads: int = 1
    ) -> None:
        import whisperx
        from threadpoolctl import threadpool_limits
        from whisperx.log_utils import setup_logging

        from streams.logs import adopt_lightning

        setup_logging(level="warning")  # else an INFO line per pipeline call, on its own handler
        adopt_lightning()  # else a checkpoint-upgrade notice per model load

        # numpy's OpenBLAS keeps a thread per core spinning after every call, even after the small
        # matrix product of the mel filter bank each decode starts with: measured here, one decode
        # kept 1.9 cores busy for 1 core of work. The limit is the process's: every process that
        # recognizes speech (stt and transcribe workers, replay, benches) gets it, and CTranslate2
        # sets its own threads below.
        threadpool_limits(limits=1, user_api="blas")

        self.name = f"whisperx:{multilingual_dir.name}" + (f"+{english_dir.name}" if english_dir else "")
        device = pick_device(device)
        options = {"compute_type": compute_type, "vad_method": "pyannote", "threads": threads}
        self._pipelines: dict[str, Any] = {"*": whisperx.load_model(str(multilingual_dir), device, **options)}
        if english_dir is not None:
            self._pipelines["en"] = whisperx.load_model(str(english_dir), device, language="en", **options)
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()  # one CTranslate2 model instance decodes one request at a time here

    def supports(self, language: str) -> bool:
        return len(language) == 2

    def pipeline(self, language: str) -> Any:
        """The WhisperX batched pipeline for ``language`` (file transcription uses it)."""
        return self._pipelines.get(language, self._pipelines["*"])

    def transcribe_file(self, audio: Float32Audio, language: str | None) -> tuple[list[tuple[float, float, str]], str]:
        """WhisperX's batched pipeline: its VAD cuts the recording, the pieces are decoded as one batch."""
        pipeline = self.pipeline(language) if language else self._pipelines["*"]
        with self._lock:
            result = pipeline.transcribe(audio, batch_size=8, language=language)
        segments = [(float(s["start"]), float(s["end"]), str(s["text"]).strip()) for s in result["segments"]]
        return segments, str(result.get("language") or language)

    def _tokenizer(self, model: Any, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        key = f"{id(model)}:{language}"
        if key not in self._tokenizers:
            multilingual = model.model.is_multilingual
            self._tokenizers[key] = Tokenizer(model.hf_tokenizer, multilingual, "transcribe", language)
        return self._tokenizers[key]

    def transcribe(self, audio: Float32Audio, language: str) -> Recognition:
        import ctranslate2

        model = self.pipeline(language).model  # faster_whisper.WhisperModel
        tokenizer = self._tokenizer(model, language)
        tokens = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        padded = bucketed(audio)
        mel = model.feature_extractor(padded)[:, : len(padded) // SAMPLE_RATE * FRAMES_PER_SECOND]
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[np.newaxis]))
        seconds = len(audio) / SAMPLE_RATE
        budget = int(seconds * TOKENS_PER_SECOND) + 10

        def decode(prompt: list[int]) -> Any:
            with self._lock:
                return model.model.generate(
                    features,
                    [prompt],
                    beam_size=1,
                    max_length=min(model.max_length, len(prompt) + budget),
                    suppress_blank=True,
                    suppress_tokens=[-1],
                    return_scores=True,  # length-normalized: the mean log-probability of the tokens
                    return_no_speech_prob=True,
                )[0]

        result = decode(tokens)
        said = [t for t in result.sequences_ids[0] if t < tokenizer.eot]  # text tokens: specials lie above eot
        if said and seconds > EARLY_END_AFTER_S and len(said) < seconds * EARLY_END_TOKENS_PER_S:
            result = decode([*tokens, *said])
        text = str(tokenizer.decode(result.sequences_ids[0])).strip()
        return Recognition(text, float(result.no_speech_prob), float(result.scores[0]))
