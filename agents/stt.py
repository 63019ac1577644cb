"""Speech to text: VAD-gated utterances, stable partials, finals.

The transform (:class:`SpeechToText`) is plain Python over numpy and an engine:
feed it one :class:`~schemas.AudioFrame`, get back the transcripts it closes or
grows. Its thin Faust wiring is in :mod:`streams.cli.workers`.

How one speaker's audio becomes captions:

- Silero VAD scores 32 ms windows; silence never reaches the recognizer. A
  short pre-roll is kept so the first phoneme is not clipped.
- While speech goes on, every ``partial_interval_s`` of new audio the
  utterance is recognized again and LocalAgreement-2 commits only the words two
  consecutive hypotheses agree on, so a partial caption only ever grows. The
  newest hypothesis's other words ride along as ``tentative``: on screen within
  one interval, marked as not final.
  Past ``partial_window_s`` (the recognizer's smallest input bucket) a partial
  decodes only the utterance's last ``partial_window_s``, and its words are
  placed after the committed ones where the two align: a partial never costs
  more than one short decode, however long the speaker goes on, and the final
  covers it all. (Decoding only the audio after a pause, with the text before
  it as the prompt, was measured too: base repeated its prompt, and Spanish
  streaming WER rose from 0.249 to 0.272.)
- Partials are a luxury: a frame that arrives ``partial_max_lag_s`` after it
  was captured means the stage is behind, and its partials are skipped so
  that every speaker's final comes first; so are they while another speaker's
  final is recognized and waits only for the hangover to end. The partials that
  are left go to whoever has waited longest for one (:mod:`agents.partial_turns`).
- Audio older than ``stale_after_s`` when it arrives is still segmented (VAD
  is cheap) but never recognized: its utterance is announced as dropped
  (:class:`~schemas.UtteranceDropped`, reason ``stale``), never lost silently.
- In a pause (a frame that ends in ``speculate_after_s`` of silence) the utterance is recognized
  through its end ahead of the hangover, so the final is ready when the hangover ends; that hypothesis
  is shown as a partial too, and when the speaker goes on (a breath, a comma) the next partial waits an
  interval from there instead of decoding the same speech again.
- ``vad_hangover_ms`` of silence, a client ``flush``, or ``max_utterance_s``
  (cut at the quietest window) closes the utterance with a final transcript
  whose text starts with every word already shown.
- A recognizer that raises is asked again (:data:`RECOGNITION_ATTEMPTS`). One
  that keeps failing costs a partial nothing but the partial; a final's
  utterance is closed and announced as dropped (reason ``error``), and its
  frame is dead-lettered (:class:`~streams.stage.Failed`). State changes only
  after recognition succeeds, so nothing is half-done when it fails.
- Hallucinations and repetition loops are judged and cut in
  :mod:`agents.hypotheses`, by the recognizer's evidence and the VAD's; a cut
  utterance does not say the end of the one it was cut from again.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator

import numpy as np
import stamina

from agents.engines.protocols import Float32Audio, SpeechRecognizer, VoiceActivityDetector
from agents.hypotheses import LocalAgreement, clean_hypothesis
from agents.partial_turns import partial_due, partial_turn
from agents.stt_config import SttConfig
from agents.utterances import SpeakerStream, Utterance
from schemas import SAMPLE_RATE, AudioFrame, Transcript, UtteranceDropped
from streams.stage import Dropped, Failed

log = logging.getLogger(__name__)

RECOGNITION_ATTEMPTS = 3
RECOGNITION_WAIT_S = 0.05
"""Each recognition is tried 3 times, 0.05 s then about 0.1 s apart (stamina's backoff, with jitter):
long enough for an engine that lost its process to get it back, short enough that the other
speakers this worker serves wait well under a second."""


class SpeechToText:
    """Turns every speaker's frames into partial and final transcripts (a :class:`StageTransform`)."""

    def __init__(self, recognizer: SpeechRecognizer, vad: VoiceActivityDetector, config: SttConfig) -> None:
        self._recognizer = recognizer
        self._vad = vad
        self._config = config
        self._window = vad.window_samples
        self._window_s = self._window / SAMPLE_RATE
        self._streams: dict[Hashable, SpeakerStream] = {}
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

    def forget(self, key: Hashable) -> None:
        self._streams.pop(key, None)
        self._resumed.pop(key, None)

    def process(self, frame: AudioFrame, received_at: float) -> Iterator[Transcript | UtteranceDropped]:
        stream = self._streams.get(self.stream_key(frame))
        if stream is None:
            done = self._resumed.pop(self.stream_key(frame), -1)  # frames up to it were worked on elsewhere
            stream = SpeakerStream(
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
            elif stream.utterance.silence_s(self._window_s) >= self._config.speculate_after_s:
                # The frame ends in a pause. Judged at its end, not window by window: a breath that ends
                # within the frame costs no decode, and its windows all arrived at the same moment.
                yield from self._speculate_in_pause(stream, stream.utterance)
            elif lag < self._config.partial_max_lag_s:
                yield from self._maybe_partial(stream, received_at)

    def expire(self, now: float) -> list[Transcript | UtteranceDropped]:
        closed: list[Transcript | UtteranceDropped] = []
        for key, stream in list(self._streams.items()):
            idle = now - stream.last_frame_at
            if stream.utterance is not None and idle > self._config.idle_close_s:
                try:
                    closed.extend(self._finish(stream))
                except Failed as failure:  # no message to dead-letter: the speaker went quiet
                    log.error("utterance given up: %r", failure.cause, extra={"room_id": stream.room_id})
                    closed.extend(failure.announcements)
            if idle > self._config.idle_evict_s:
                del self._streams[key]
        return closed

    # -- segmentation --------------------------------------------------------

    def _push_window(
        self, stream: SpeakerStream, sequence: int, window: Float32Audio, window_end_at: float, stale: bool
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
            utterance.voiced_probability += probability
            utterance.last_voiced_at = window_end_at
        if utterance.silence_s(self._window_s) >= config.hangover_s:
            yield from self._finish(stream)
        elif len(utterance.windows) * self._window_s >= config.max_utterance_s:
            yield from self._cut_at_quietest(stream, sequence)

    def _open(self, stream: SpeakerStream, sequence: int, windows: list[Float32Audio], start: int) -> Utterance:
        stream.utterance = Utterance(
            first_sequence=sequence,
            recognized_at=stream.last_frame_at,
            start_sample=start,
            windows=windows,
            window_energy=[float(np.mean(w * w)) for w in windows],
        )
        return stream.utterance

    def _cut_at_quietest(self, stream: SpeakerStream, sequence: int) -> Iterator[Transcript | UtteranceDropped]:
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
        remainder.agreement = LocalAgreement(preceding=utterance.said)
        remainder.voiced_windows = len(rest)
        remainder.voiced_probability = len(rest) * utterance.voiced_probability / max(1, utterance.voiced_windows)
        remainder.first_voiced_at = utterance.last_voiced_at - len(rest) * self._window_s
        remainder.last_voiced_at = utterance.last_voiced_at
        remainder.stale = utterance.stale

    # -- recognition -----------------------------------------------------------

    def _maybe_partial(self, stream: SpeakerStream, now: float) -> Iterator[Transcript]:
        utterance = stream.utterance
        assert utterance is not None
        interval_s = self._config.partial_interval_s
        if not partial_due(utterance, self._window_s, interval_s):
            return
        if not partial_turn(stream, self._streams.values(), now, self._window_s, interval_s):
            return  # the worker is shared: finals first, then the speaker whose screen waited longest
        utterance.recognized_windows = len(utterance.windows)  # the next try waits an interval, failed or not
        utterance.recognized_at = now
        start = max(0, len(utterance.windows) - round(self._config.partial_window_s / self._window_s))
        try:
            hypothesis = self._recognize(utterance, stream.language, start=start)
        except Exception as exc:  # noqa: BLE001 - a partial is a luxury: the final tries again
            log.warning("partial not recognized: %r", exc, extra={"room_id": stream.room_id})
            return
        yield from self._partial(stream, utterance, hypothesis, windowed=start > 0)

    def _partial(
        self, stream: SpeakerStream, utterance: Utterance, hypothesis: str, windowed: bool
    ) -> Iterator[Transcript]:
        """Take a new hypothesis into the utterance's agreement; a partial caption if what it shows changed."""
        agreement = utterance.agreement
        grew, tentative = agreement.update(hypothesis, windowed=windowed), " ".join(agreement.tentative)
        if grew or tentative != utterance.shown_tentative:
            utterance.shown_tentative = tentative
            yield self._transcript(stream, utterance, agreement.text, is_final=False, tentative=tentative)

    def _recognize(self, utterance: Utterance, language: str, end: int | None = None, start: int = 0) -> str:
        audio = utterance.audio(end, start)
        retries = stamina.retry_context(on=Exception, attempts=RECOGNITION_ATTEMPTS, wait_initial=RECOGNITION_WAIT_S,
                                        wait_jitter=RECOGNITION_WAIT_S, wait_max=10 * RECOGNITION_WAIT_S)  # fmt: skip
        for attempt in retries:
            with attempt:
                recognition = self._recognizer.transcribe(audio, language)
        return clean_hypothesis(recognition, utterance.voice(self._window_s))

    def _speculate(self, utterance: Utterance, language: str) -> bool:
        """Recognize the utterance as it stands while the pause goes on, so that when the hangover
        ends the final is already made: recognition overlaps the wait instead of following it.
        True when it made a new hypothesis."""
        if utterance.stale or (utterance.speculation is not None and utterance.speculation[0] == utterance.voiced_end):
            return False
        end = utterance.voiced_end
        utterance.speculation = (end, self._recognize(utterance, language, end))
        return True

    def _speculate_in_pause(self, stream: SpeakerStream, utterance: Utterance) -> Iterator[Transcript]:
        """Speculate, and show the speculation as a partial: it is the utterance's newest hypothesis,
        through to the speech's end. Most pauses end in more speech (a breath, a comma), and the partial
        due then would decode the same audio again: it waits an interval from here instead."""
        try:
            if not self._speculate(utterance, stream.language):
                return
        except Exception as exc:  # noqa: BLE001 - the final recognizes again, and declares a failure
            log.warning("utterance not recognized ahead of its final: %r", exc, extra={"room_id": stream.room_id})
            return
        assert utterance.speculation is not None
        utterance.recognized_windows, utterance.recognized_at = len(utterance.windows), stream.last_frame_at
        yield from self._partial(stream, utterance, utterance.speculation[1], windowed=False)

    def _finish(self, stream: SpeakerStream) -> Iterator[Transcript | UtteranceDropped]:
        utterance = stream.utterance
        assert utterance is not None
        if utterance.voiced_windows * self._window_s < self._config.min_speech_s:
            self._close(stream)
            return
        if utterance.stale:
            self._close(stream)
            yield UtteranceDropped.of(self._transcript(stream, utterance, "", is_final=True), "stt", "stale")
            return
        try:
            self._speculate(utterance, stream.language)  # a no-op when the pause was long enough to speculate
        except Exception as exc:
            self._close(stream)
            dropped = UtteranceDropped.of(self._transcript(stream, utterance, "", is_final=True), "stt", "error")
            raise Failed(exc, dropped) from exc
        self._close(stream)
        assert utterance.speculation is not None
        text = utterance.agreement.final(utterance.speculation[1])
        utterance.said = text.split()
        if text:
            yield self._transcript(stream, utterance, text, is_final=True)

    @staticmethod
    def _close(stream: SpeakerStream) -> None:
        """The utterance is over: every frame up to here is fully worked on."""
        stream.utterance = None
        stream.finished_through = stream.last_sequence

    def _transcript(
        self, stream: SpeakerStream, utterance: Utterance, text: str, *, is_final: bool, tentative: str = ""
    ) -> Transcript:
        transcript = Transcript(
            room_id=stream.room_id,
            timings=stream.timings,
            speaker_id=stream.speaker_id,
            utterance_id=f"{stream.session_id}:{utterance.first_sequence}",
            revision=utterance.revision,
            language=stream.language,
            text=text,
            is_final=is_final,
            tentative=tentative,
            audio_start_s=utterance.start_sample / SAMPLE_RATE,
            audio_end_s=(utterance.start_sample + len(utterance.windows) * self._window) / SAMPLE_RATE,
            speech_started_at=utterance.first_voiced_at,
            speech_ended_at=utterance.last_voiced_at,
        )
        utterance.revision += 1
        return transcript
