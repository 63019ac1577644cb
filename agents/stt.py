"""Speech to text: VAD-gated utterances, stable partials, finals.

The transform (:class:`SpeechToText`) is plain Python over numpy and an engine:
feed it one :class:`~schemas.AudioFrame`, get back the transcripts it closes or
grows. :func:`register` is the thin Faust wiring around it.

How one speaker's audio becomes captions:

- Silero VAD scores 32 ms windows; silence never reaches the recognizer. A
  short pre-roll is kept so the first phoneme is not clipped.
- While speech goes on, every ``partial_interval_s`` of new audio the
  utterance is recognized again and LocalAgreement-2 keeps only the words two
  consecutive hypotheses agree on, so a partial caption only ever grows.
  Partials stop once the utterance outgrows ``partial_window_s`` (the
  recognizer's smallest input bucket), so a partial never costs more than one
  short decode, however long the speaker goes on; the final covers it all.
  (Decoding only the audio after a pause, with the text before it as the
  prompt, was measured too: base repeated its prompt, and Spanish streaming
  WER rose from 0.249 to 0.272.)
- Partials are a luxury: a frame that arrives ``partial_max_lag_s`` after it
  was captured means the stage is behind, and its partials are skipped so
  that every speaker's final comes first.
- Audio older than ``stale_after_s`` when it arrives is still segmented (VAD
  is cheap) but never recognized: its utterance is announced as dropped
  (:class:`~schemas.UtteranceDropped`, reason ``stale``), never lost silently.
- ``vad_hangover_ms`` of silence, a client ``flush``, or ``max_utterance_s``
  (cut at the quietest window) closes the utterance with a final transcript
  whose text starts with every word already shown.
- Hallucinations are judged by evidence (:func:`clean_hypothesis`): the
  recognizer's own probability that it heard no speech and its confidence in
  what it wrote, Whisper's rule. Whisper's known phrases over silence ("thank
  you", "bye", "you") only break a tie when that evidence is doubtful, so a
  speaker's real "Thank you." is kept. Repetition loops are cut.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from agents.engines.protocols import Float32Audio, Recognition, SpeechRecognizer, VadStream, VoiceActivityDetector
from schemas import SAMPLE_RATE, AudioFrame, StageTiming, Transcript, UtteranceDropped
from streams.settings import Settings
from streams.stage import Dropped
from streams.topics import AUDIO_RAW

if TYPE_CHECKING:
    from streams.app import StageApp

TAIL_WINDOWS = 3
"""Silent windows kept after speech in what is recognized (about 0.1 s): words end softly."""


@dataclass(frozen=True)
class SttConfig:
    vad_threshold: float = 0.5
    hangover_s: float = 0.5
    max_utterance_s: float = 15.0
    partial_interval_s: float = 1.0
    stale_after_s: float = 10.0
    pre_roll_s: float = 0.2
    speculate_after_s: float = 0.2
    """Pause after which the final is recognized ahead of the hangover's end."""
    min_speech_s: float = 0.25
    """Voiced time below which an utterance is a click or a cough, not speech."""
    idle_close_s: float = 3.0
    """An utterance whose speaker sent nothing for this long (a vanished client) is closed."""
    idle_evict_s: float = 120.0
    """A speaker who sent nothing for this long is forgotten."""
    partial_window_s: float = 10.0
    """Longest utterance a partial hypothesis is made of (see the module's doc)."""
    partial_max_lag_s: float = 0.15
    """A frame taken this long after its last sample was captured means the stage is behind: no partial.
    Idle, frames are taken within 0.1 s. Measured with ``dragoman bench load`` at 6 English rooms, while
    Apertium still cost 0.3 s of CPU per caption: at 0.3 s the worker was already far behind (final p90
    1.0–1.1 s); at 0.15 s, 0.87 s."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SttConfig:
        return cls(
            vad_threshold=settings.vad_threshold,
            hangover_s=settings.vad_hangover_ms / 1000,
            max_utterance_s=settings.max_utterance_s,
            partial_interval_s=settings.partial_interval_s,
            stale_after_s=settings.stale_after_s,
        )


# --- text hygiene -------------------------------------------------------------

_HALLUCINATIONS = {
    # What Whisper says over silence or noise, learnt from subtitled video: a tie-breaker only.
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "please subscribe",
    "subscribe to my channel",
    "like and subscribe",
    "see you next time",
    "bye",
    "you",
    "subtitles by the amaraorg community",
    "gracias por ver",
    "gracias por ver el video",
    "suscribete",
    "subtitulos realizados por la comunidad de amaraorg",
    "subtitulado por la comunidad de amaraorg",
    "untertitel im auftrag des zdf fur funkde",
    "untertitel der amaraorg community",
    "vielen dank fur ihre aufmerksamkeit",
    "sous-titres realises para la communaute damaraorg",
    "sous-titrage st 501",
    "merci davoir regarde",
    "obrigado por assistir",
    "legendas pela comunidade amaraorg",
    "grazie per la visione",
    "sottotitoli creati dalla comunita amaraorg",
    "продолжение следует",
    "спасибо за просмотр",
    "ご視聴ありがとうございました",
    "字幕由amaraorg社区提供",
}
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)|[♪♫]+")
_PUNCTUATION = str.maketrans("", "", string.punctuation + "¿¡«»…“”‘’")


def normalize_word(word: str) -> str:
    """Lower case, no accents, no punctuation: how two hypotheses' words are compared."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_PUNCTUATION)


def normalize_text(text: str) -> str:
    return " ".join(w for w in (normalize_word(w) for w in text.split()) if w)


def _truncate_loops(words: list[str], max_repeats: int = 3) -> list[str]:
    """Cut a repetition loop ("la la la la ...") after its first occurrence."""
    keys = [normalize_word(w) for w in words]
    for size in range(1, 5):
        for start in range(len(keys) - size * max_repeats + 1):
            gram = keys[start : start + size]
            repeats = 1
            while keys[start + size * repeats : start + size * (repeats + 1)] == gram:
                repeats += 1
            if repeats > max_repeats:
                return words[: start + size]
    return words


NO_SPEECH_PROB = 0.6
MIN_AVG_LOGPROB = -1.0
"""Whisper's own rule for "nothing was said": the no-speech probability above 0.6 *and* the text's
mean log-probability below -1. Measured with tiny.en on recordings: "Thank you.", "Goodbye!" and
"No." score no-speech 0.03-0.06 and log-probability -0.2 to -0.7; silence, noise, mains hum,
breathing and a click all decode as "you" or "." with no-speech 0.82-0.99 and -1.3 to -3.1."""
DOUBTFUL_NO_SPEECH_PROB = 0.3
"""Below the rule but above this, a known silence phrase is taken for one (the phrase list's tie)."""


def heard_speech(recognition: Recognition) -> bool:
    return not (recognition.no_speech_prob > NO_SPEECH_PROB and recognition.avg_logprob < MIN_AVG_LOGPROB)


def clean_hypothesis(recognition: Recognition) -> str:
    """What was said, without annotations and loops; "" when the evidence says nothing was.

    The known silence phrases count only where the evidence is doubtful: a confident "Thank you."
    or "Bye." is a person talking, and stays.
    """
    if not heard_speech(recognition):
        return ""
    words = _truncate_loops(_BRACKETED.sub(" ", recognition.text).split())
    doubtful = recognition.no_speech_prob > DOUBTFUL_NO_SPEECH_PROB or recognition.avg_logprob < MIN_AVG_LOGPROB
    if doubtful and normalize_text(" ".join(words)) in _HALLUCINATIONS:
        return ""
    return " ".join(words)


class LocalAgreement:
    """LocalAgreement-2: show only the words two consecutive hypotheses agree on.

    ``committed`` only grows; words once committed keep their surface form, so
    every later caption of the utterance, the final included, starts with them.
    """

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._previous: list[str] = []

    def update(self, hypothesis: str) -> bool:
        """Take a new hypothesis; True when the committed prefix grew."""
        words = hypothesis.split()
        agreed = 0
        for a, b in zip(self._previous, words, strict=False):
            if normalize_word(a) != normalize_word(b):
                break
            agreed += 1
        self._previous = words
        if agreed <= len(self.committed):
            return False
        self.committed.extend(words[len(self.committed) : agreed])
        return True

    def final(self, hypothesis: str) -> str:
        """The final text: every committed word, then the rest of the last hypothesis."""
        return " ".join(self.committed + hypothesis.split()[len(self.committed) :])

    @property
    def text(self) -> str:
        return " ".join(self.committed)


# --- one speaker ----------------------------------------------------------------


@dataclass
class _Utterance:
    first_sequence: int
    start_sample: int
    windows: list[Float32Audio]
    window_energy: list[float]
    voiced_windows: int = 0
    silent_run: int = 0
    first_voiced_at: float = 0.0
    last_voiced_at: float = 0.0
    recognized_windows: int = 0
    """Length (in windows) when the last hypothesis was made."""
    speculation: tuple[int, str] | None = None
    """(audio end in windows, cleaned hypothesis) recognized early in a pause, ready to become the final."""
    stale: bool = False
    """Some of its audio arrived past the stale budget: it is announced as dropped, not recognized."""
    revision: int = 0
    agreement: LocalAgreement = field(default_factory=LocalAgreement)

    def audio(self, windows: int | None = None) -> Float32Audio:
        return np.concatenate(self.windows[:windows])

    @property
    def voiced_end(self) -> int:
        """Where the speech ends, in windows: trailing silence beyond a short tail is only the hangover."""
        return len(self.windows) - max(0, self.silent_run - TAIL_WINDOWS)


@dataclass
class _SpeakerStream:
    """One participant connection's audio, as far as the recognizer has heard it."""

    vad: VadStream
    room_id: str
    session_id: str
    speaker_id: str
    language: str
    timings: tuple[StageTiming, ...] = ()
    """Timings of the latest frame: what this stream's next transcript carries on."""
    last_sequence: int = -1
    finished_through: int = -1
    """The last frame when an utterance last finished: every frame up to it is fully worked on."""
    last_frame_at: float = 0.0
    samples_seen: int = 0
    leftover: Float32Audio = field(default_factory=lambda: np.zeros(0, np.float32))
    pre_roll: deque[Float32Audio] = field(default_factory=deque)
    utterance: _Utterance | None = None


class SpeechToText:
    """Turns every speaker's frames into partial and final transcripts (a :class:`StageTransform`)."""

    def __init__(self, recognizer: SpeechRecognizer, vad: VoiceActivityDetector, config: SttConfig) -> None:
        self._recognizer = recognizer
        self._vad = vad
        self._config = config
        self._window = vad.window_samples
        self._window_s = self._window / SAMPLE_RATE
        self._streams: dict[Hashable, _SpeakerStream] = {}
        self._resumed: dict[Hashable, int] = {}
        """Streams taken up from another worker, not heard yet: the frame their work is finished through."""

    def stream_key(self, frame: AudioFrame) -> Hashable:
        """The speaker's connection: its session id, which the gateway's admission counts by."""
        return frame.session_id

    def warm_up(self) -> None:
        """Each model once, on a second of quiet noise: the first real utterance then decodes at full speed."""
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
        for language in ("en", "es"):
            self._recognizer.transcribe(noise, language)
        self._vad.stream().speech_probability(noise[: self._window])

    def is_open(self, key: Hashable) -> bool:
        stream = self._streams.get(key)
        return stream is not None and stream.utterance is not None

    def done_through(self, key: Hashable) -> int | None:
        stream = self._streams.get(key)
        return stream.finished_through if stream is not None and stream.finished_through >= 0 else None

    def resume(self, key: Hashable, done_through: int) -> None:
        if key not in self._streams:
            self._resumed[key] = done_through

    def process(self, frame: AudioFrame, received_at: float) -> Iterator[Transcript | UtteranceDropped]:
        stream = self._streams.get(self.stream_key(frame))
        if stream is None:
            done = self._resumed.pop(self.stream_key(frame), -1)  # frames up to it were worked on elsewhere
            stream = _SpeakerStream(
                self._vad.stream(), frame.room_id, frame.session_id, frame.speaker_id, frame.language,
                last_sequence=done, finished_through=done,
            )  # fmt: skip
            self._streams[self.stream_key(frame)] = stream
        if frame.sequence_number <= stream.last_sequence:
            raise Dropped("duplicate")
        if frame.sample_rate != SAMPLE_RATE or len(frame.pcm) % 2:
            raise Dropped("bad_frame")
        stale = received_at - frame.captured_at > self._config.stale_after_s
        stream.last_sequence = frame.sequence_number
        stream.last_frame_at = received_at
        stream.timings = frame.timings
        if stream.utterance is None:
            stream.language = frame.language  # a language change takes effect from the next utterance

        pcm = np.frombuffer(frame.pcm, dtype="<i2").astype(np.float32) / 32768.0
        audio = np.concatenate([stream.leftover, pcm])
        usable = len(audio) - len(audio) % self._window
        stream.leftover = audio[usable:]
        captured_start = frame.captured_at - (len(audio) - len(pcm)) / SAMPLE_RATE
        for offset in range(0, usable, self._window):
            window_end_at = captured_start + (offset + self._window) / SAMPLE_RATE
            yield from self._push_window(
                stream, frame.sequence_number, audio[offset : offset + self._window], window_end_at, stale
            )
        if stream.utterance is not None:
            lag = received_at - frame.captured_at - len(pcm) / SAMPLE_RATE
            if frame.end_of_utterance:
                yield from self._finish(stream)
            elif lag < self._config.partial_max_lag_s:
                yield from self._maybe_partial(stream)

    def expire(self, now: float) -> list[Transcript | UtteranceDropped]:
        closed: list[Transcript | UtteranceDropped] = []
        for key, stream in list(self._streams.items()):
            idle = now - stream.last_frame_at
            if stream.utterance is not None and idle > self._config.idle_close_s:
                closed.extend(self._finish(stream))
            if idle > self._config.idle_evict_s:
                del self._streams[key]
        return closed

    # -- segmentation --------------------------------------------------------

    def _push_window(
        self, stream: _SpeakerStream, sequence: int, window: Float32Audio, window_end_at: float, stale: bool
    ) -> Iterator[Transcript | UtteranceDropped]:
        config = self._config
        probability = stream.vad.speech_probability(window)
        stream.samples_seen += len(window)
        utterance = stream.utterance
        if utterance is None:
            if probability < config.vad_threshold:
                stream.pre_roll.append(window)
                while len(stream.pre_roll) * self._window_s > config.pre_roll_s:
                    stream.pre_roll.popleft()
                return
            # samples_seen already counts this window, which is appended below.
            start = stream.samples_seen - (len(stream.pre_roll) + 1) * self._window
            utterance = self._open(stream, sequence, [*stream.pre_roll], start)
            stream.pre_roll.clear()
        utterance.stale |= stale
        utterance.windows.append(window)
        utterance.window_energy.append(float(np.mean(window * window)))
        # Hysteresis as in Silero's own iterator: speech ends below threshold - 0.15.
        utterance.silent_run = 0 if probability >= config.vad_threshold - 0.15 else utterance.silent_run + 1
        if probability >= config.vad_threshold:
            if not utterance.voiced_windows:
                utterance.first_voiced_at = window_end_at - self._window_s
            utterance.voiced_windows += 1
            utterance.last_voiced_at = window_end_at
        silence_s = utterance.silent_run * self._window_s
        if silence_s >= config.hangover_s:
            yield from self._finish(stream)
        elif len(utterance.windows) * self._window_s >= config.max_utterance_s:
            yield from self._cut_at_quietest(stream, sequence)
        elif silence_s >= config.speculate_after_s:
            self._speculate(utterance, stream.language)

    def _open(self, stream: _SpeakerStream, sequence: int, windows: list[Float32Audio], start: int) -> _Utterance:
        stream.utterance = _Utterance(
            first_sequence=sequence,
            start_sample=start,
            windows=windows,
            window_energy=[float(np.mean(w * w)) for w in windows],
        )
        return stream.utterance

    def _cut_at_quietest(self, stream: _SpeakerStream, sequence: int) -> Iterator[Transcript | UtteranceDropped]:
        """Close an over-long utterance at its quietest window in the second half; keep the rest open."""
        utterance = stream.utterance
        assert utterance is not None
        half = len(utterance.windows) // 2
        cut = half + int(np.argmin(utterance.window_energy[half:])) + 1
        rest = utterance.windows[cut:]
        del utterance.windows[cut:], utterance.window_energy[cut:]
        utterance.silent_run = 0
        yield from self._finish(stream)
        remainder = self._open(stream, sequence, rest, stream.samples_seen - len(rest) * self._window)
        remainder.voiced_windows = len(rest)
        remainder.first_voiced_at = utterance.last_voiced_at - len(rest) * self._window_s
        remainder.last_voiced_at = utterance.last_voiced_at
        remainder.stale = utterance.stale

    # -- recognition -----------------------------------------------------------

    def _maybe_partial(self, stream: _SpeakerStream) -> Iterator[Transcript]:
        utterance = stream.utterance
        assert utterance is not None
        if (len(utterance.windows) - utterance.recognized_windows) * self._window_s < self._config.partial_interval_s:
            return
        if utterance.silent_run or utterance.stale:
            return  # the speaker paused: the final may be a hangover away, and a partial now would delay it
        if len(utterance.windows) * self._window_s > self._config.partial_window_s:
            return
        utterance.recognized_windows = len(utterance.windows)
        hypothesis = self._recognize(utterance, stream.language)
        if utterance.agreement.update(hypothesis):
            yield self._transcript(stream, utterance, utterance.agreement.text, is_final=False)

    def _recognize(self, utterance: _Utterance, language: str, end: int | None = None) -> str:
        return clean_hypothesis(self._recognizer.transcribe(utterance.audio(end), language))

    def _speculate(self, utterance: _Utterance, language: str) -> None:
        """Recognize the utterance as it stands while the pause goes on, so that when the hangover
        ends the final is already made: recognition overlaps the wait instead of following it."""
        if utterance.stale:
            return
        if utterance.speculation is None or utterance.speculation[0] != utterance.voiced_end:
            end = utterance.voiced_end
            utterance.speculation = (end, self._recognize(utterance, language, end))

    def _finish(self, stream: _SpeakerStream) -> Iterator[Transcript | UtteranceDropped]:
        utterance = stream.utterance
        assert utterance is not None
        stream.utterance = None
        stream.finished_through = stream.last_sequence
        if utterance.voiced_windows * self._window_s < self._config.min_speech_s:
            return
        if utterance.stale:
            yield UtteranceDropped.of(self._transcript(stream, utterance, "", is_final=True), "stt", "stale")
            return
        self._speculate(utterance, stream.language)  # a no-op when the pause was long enough to speculate
        assert utterance.speculation is not None
        text = utterance.agreement.final(utterance.speculation[1])
        if text:
            yield self._transcript(stream, utterance, text, is_final=True)

    def _transcript(self, stream: _SpeakerStream, utterance: _Utterance, text: str, *, is_final: bool) -> Transcript:
        transcript = Transcript(
            room_id=stream.room_id,
            timings=stream.timings,
            speaker_id=stream.speaker_id,
            utterance_id=f"{stream.session_id}:{utterance.first_sequence}",
            revision=utterance.revision,
            language=stream.language,
            text=text,
            is_final=is_final,
            audio_start_s=utterance.start_sample / SAMPLE_RATE,
            audio_end_s=(utterance.start_sample + len(utterance.windows) * self._window) / SAMPLE_RATE,
            speech_started_at=utterance.first_voiced_at,
            speech_ended_at=utterance.last_voiced_at,
        )
        utterance.revision += 1
        return transcript


# --- Faust wiring ---------------------------------------------------------------------


def register(app: StageApp) -> None:
    """audio.raw → text.original, with the recognizer and VAD the settings name."""
    from agents.models import load_recognizer, load_vad

    settings = app.settings
    transform = SpeechToText(load_recognizer(settings), load_vad(settings), SttConfig.from_settings(settings))
    app.add_stage(AUDIO_RAW, transform)
