"""What speech costs the speech-to-text transform: its decodes, counted and timed (the tuning figure
``dragoman bench captions`` prints before its live runs)."""

from __future__ import annotations

import time

from agents.bench import stream_utterance, word_error_rate
from agents.engines.protocols import Float32Audio, Recognition, SpeechRecognizer, VoiceActivityDetector
from agents.stt import SpeechToText
from agents.stt_config import SttConfig
from schemas import SAMPLE_RATE


class CountingRecognizer:
    """A recognizer that counts its decodes and the seconds they take."""

    def __init__(self, recognizer: SpeechRecognizer) -> None:
        self._recognizer = recognizer
        self.name = recognizer.name
        self.decodes = 0
        self.seconds = 0.0

    def supports(self, language: str) -> bool:
        return self._recognizer.supports(language)

    def transcribe(self, audio: Float32Audio, language: str) -> Recognition:
        started = time.perf_counter()
        try:
            return self._recognizer.transcribe(audio, language)
        finally:
            self.decodes += 1
            self.seconds += time.perf_counter() - started


def bench_reading_cost(
    recognizer: SpeechRecognizer, vad: VoiceActivityDetector, config: SttConfig, audio: Float32Audio,
    said: list[str], language: str,
) -> dict[str, float]:  # fmt: skip
    """One reader through the stt transform alone, on the virtual clock of :func:`stream_utterance`: what
    the speech costs the worker (decodes, seconds of decoding) and the WER of its finals. A tuning
    figure: no Kafka, no other speaker, no gateway."""
    counting = CountingRecognizer(recognizer)
    streamed = stream_utterance(SpeechToText(counting, vad, config), audio, language, "reading")
    return {"decodes": counting.decodes, "decode_s": round(counting.seconds, 2),
            "audio_s": round(len(audio) / SAMPLE_RATE, 1),
            "wer": round(word_error_rate([" ".join(said)], [streamed.final_text]), 3)}  # fmt: skip
