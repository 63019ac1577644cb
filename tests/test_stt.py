"""The STT transform, called directly: real Silero VAD on recorded speech, a fake recognizer."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.engines.protocols import Recognition
from agents.engines.silero import SileroVad
from agents.hypotheses import LocalAgreement, clean_hypothesis, continuation, overlap
from agents.recordings import prompt_audio
from agents.stt import SpeechToText
from agents.stt_config import SttConfig
from agents.stt_cost import bench_reading_cost
from schemas import Transcript, UtteranceDropped
from streams.model_paths import ModelPaths
from streams.settings import get_settings
from streams.stage import Dropped, Failed
from tests.fakes import GrowingRecognizer
from tests.speech import frames, prompt_pcm, silence


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad(ModelPaths(get_settings().models_dir).vad)


def run(stt: SpeechToText, pcm: bytes, start_at: float = 1000.0) -> list[Transcript | UtteranceDropped]:
    """Feed ``pcm`` in real time order, as if each frame arrived 50 ms after capture."""
    out: list[Transcript | UtteranceDropped] = []
    for frame in frames(pcm, start_at):
        out.extend(stt.process(frame, frame.captured_at + 0.15))
    return out


def test_silence_and_room_noise_produce_no_caption(vad: SileroVad) -> None:
    recognizer = GrowingRecognizer()
    stt = SpeechToText(recognizer, vad, SttConfig())
    noise = (np.random.default_rng(0).normal(0, 0.003, 16_000 * 10) * 32767).astype("<i2").tobytes()
    assert run(stt, silence(10) + noise) == []
    assert recognizer.calls == [], "silence reached the recognizer"


def test_speech_gives_growing_partials_then_a_final(vad: SileroVad) -> None:
    stt = SpeechToText(GrowingRecognizer(), vad, SttConfig(partial_interval_s=0.5))
    out = run(stt, silence(0.5) + prompt_pcm("en", "agent-alreadyon") + silence(1.0))
    partials = [t for t in out if not t.is_final]
    finals = [t for t in out if t.is_final]
    assert len(finals) >= 1 and len(partials) >= 2
    first_utterance = [t for t in out if t.utterance_id == finals[0].utterance_id]
    texts = [t.text for t in first_utterance]
    assert all(later.startswith(earlier) for earlier, later in pairwise(texts)), texts
    assert [t.revision for t in first_utterance] == list(range(len(first_utterance)))
    assert finals[0].speech_ended_at > 1000.5 and finals[0].audio_start_s < 0.6


def test_flush_closes_the_utterance_at_once(vad: SileroVad) -> None:
    stt = SpeechToText(GrowingRecognizer(), vad, SttConfig())
    speech = list(frames(silence(0.3) + prompt_pcm("en", "agent-loginok")))
    for frame in speech:
        list(stt.process(frame, frame.captured_at))
    assert stt.is_open("s1")
    flush = speech[-1].model_copy(update={"sequence_number": len(speech), "pcm": b"", "end_of_utterance": True})
    out = list(stt.process(flush, flush.captured_at))
    assert [t.is_final for t in out] == [True]
    assert not stt.is_open("s1")


def test_a_vanished_speakers_utterance_is_closed_by_expire(vad: SileroVad) -> None:
    stt = SpeechToText(GrowingRecognizer(), vad, SttConfig(idle_close_s=2.0))
    for frame in frames(silence(0.3) + prompt_pcm("en", "agent-loginok")):
        list(stt.process(frame, frame.captured_at))
    assert stt.expire(now=1000.0) == []
    closed = stt.expire(now=1100.0)
    assert [t.is_final for t in closed] == [True]
    assert not stt.is_open("s1")


def test_a_worker_taking_over_skips_what_was_done_and_goes_on_after_it(vad: SileroVad) -> None:
    """A crash replays the partition from an older open stream; this stream's finished utterance comes
    again. Resumed where its work was done, the new worker does not say it a second time."""
    first_turn = list(frames(silence(0.3) + prompt_pcm("en", "agent-loginok") + silence(1.0)))
    done_by_the_dead_one = SpeechToText(GrowingRecognizer(), vad, SttConfig())
    finals = [t for f in first_turn for t in done_by_the_dead_one.process(f, f.captured_at) if t.is_final]
    assert len(finals) == 1 and not done_by_the_dead_one.is_open("s1")
    done_through = done_by_the_dead_one.done_through("s1")
    assert done_through is not None and done_through < first_turn[-1].sequence_number

    taking_over = SpeechToText(GrowingRecognizer(), vad, SttConfig())
    taking_over.resume("s1", done_through)
    second_turn = [f.model_copy(update={"sequence_number": f.sequence_number + len(first_turn)}) for f in first_turn]
    out: list[Transcript | UtteranceDropped] = []
    for frame in first_turn + second_turn:  # the replay, then what the speaker says next
        try:
            out += taking_over.process(frame, frame.captured_at)
        except Dropped as dropped:
            assert dropped.reason == "duplicate" and frame.sequence_number <= done_through
    [final] = [t for t in out if t.is_final]  # one: the finished utterance is not said again
    assert int(final.utterance_id.split(":")[1]) >= len(first_turn), "not the second turn's utterance"


def test_duplicate_and_malformed_frames_are_dropped(vad: SileroVad) -> None:
    stt = SpeechToText(GrowingRecognizer(), vad, SttConfig())
    first = next(frames(silence(0.1)))
    list(stt.process(first, first.captured_at))
    with pytest.raises(Dropped, match="duplicate"):
        list(stt.process(first, first.captured_at))
    odd = first.model_copy(update={"sequence_number": 2, "pcm": b"\x00" * 3})
    with pytest.raises(Dropped, match="bad_frame"):
        list(stt.process(odd, odd.captured_at))


def test_stale_speech_is_announced_as_dropped_and_never_recognized(vad: SileroVad) -> None:
    recognizer = GrowingRecognizer()
    stt = SpeechToText(recognizer, vad, SttConfig(stale_after_s=5))
    out = []
    for frame in frames(silence(0.3) + prompt_pcm("en", "agent-loginok") + silence(1.0)):
        out.extend(stt.process(frame, frame.captured_at + 6))  # the stage is 6 s behind
    assert [(type(o), o.reason, o.language) for o in out] == [(UtteranceDropped, "stale", "en")]
    assert out[0].utterance_id.startswith("s1:") and recognizer.calls == []


def test_a_stage_running_behind_skips_partials_but_not_finals(vad: SileroVad) -> None:
    """Behind, no partial is decoded: the one decode is the final's, made in the pause (and shown
    there as a partial, which costs nothing more)."""
    recognizer = GrowingRecognizer()
    stt = SpeechToText(recognizer, vad, SttConfig(partial_interval_s=0.5))
    out = []
    for frame in frames(silence(0.3) + prompt_pcm("en", "agent-alreadyon") + silence(1.0)):
        out.extend(stt.process(frame, frame.captured_at + 0.1 + 0.5))  # taken 0.5 s after its end
    assert len(recognizer.calls) == 1
    assert [t.is_final for t in out] == [False, True] and out[0].tentative == out[1].text


def test_a_pause_that_ends_in_more_speech_shows_its_decode_and_is_not_decoded_again(vad: SileroVad) -> None:
    """A breath (longer than the wait before the final is speculated, shorter than the hangover): the
    hypothesis decoded in it is shown at once, and the next partial waits an interval of new audio
    instead of decoding the same speech again as soon as the speaker goes on."""
    recognizer = GrowingRecognizer()
    stt = SpeechToText(recognizer, vad, SttConfig(partial_interval_s=0.5))
    pause_at = 3.0  # seconds into the audio
    speech = prompt_pcm("en", "agent-alreadyon")
    pcm = silence(0.3) + speech[: int(pause_at * 32_000)] + silence(0.3) + speech[int(pause_at * 32_000) :] + silence(1)
    decoded_at: list[float] = []  # audio time of each frame that decoded
    shown_in_pause = []
    for frame in frames(pcm):
        calls = len(recognizer.calls)
        out = list(stt.process(frame, frame.captured_at + 0.15))
        at = frame.captured_at - 1000.0
        decoded_at += [at] * (len(recognizer.calls) - calls)
        shown_in_pause += [t for t in out if 0.3 + pause_at + 0.2 <= at < 0.3 + pause_at + 0.3 and not t.is_final]
    assert shown_in_pause, "the pause's decode was not shown"
    in_pause = next(i for i, at in enumerate(decoded_at) if at >= 0.3 + pause_at + 0.2)
    assert decoded_at[in_pause + 1] - decoded_at[in_pause] >= 0.5 - 1e-9, decoded_at


def test_a_breath_over_before_its_frame_ends_costs_no_decode(vad: SileroVad) -> None:
    """A pause is judged at the end of a frame, whose windows all arrived at once: a breath of 0.3 s
    inside a 1 s frame, over before the frame ends, is not decoded (window by window, its 0.2 s mark
    was, in a pause the same frame shows was over)."""
    recognizer = GrowingRecognizer()
    stt = SpeechToText(recognizer, vad, SttConfig(partial_interval_s=60))  # no partials: only pauses decode
    speech = prompt_pcm("en", "agent-alreadyon")
    breath_at = 1.4 * 32_000  # inside the second 1 s frame, whose last 0.3 s are speech again
    pcm = speech[: int(breath_at)] + silence(0.3) + speech[int(breath_at) :] + silence(1)
    decodes, out = [], []
    for frame in frames(pcm, frame_bytes=32_000):
        calls = len(recognizer.calls)
        out += stt.process(frame, frame.captured_at + 1.05)
        decodes.append(len(recognizer.calls) - calls)
    assert decodes[1] == 0, decodes
    assert [t.is_final for t in out][-1:] == [True]


def test_the_reading_cost_counts_and_times_every_decode_of_the_transform(vad: SileroVad) -> None:
    """`bench captions`' tuning figure: what one reader costs the transform, decode by decode."""
    recognizer = GrowingRecognizer(delay_s=0.01)
    said = "the words the fake does not say"
    cost = bench_reading_cost(recognizer, vad, SttConfig(), prompt_audio("en", "agent-alreadyon"), [said], "en")
    assert cost["decodes"] == len(recognizer.calls) > 1
    assert cost["decode_s"] >= 0.01 * cost["decodes"] and cost["wer"] > 0


def test_while_a_final_waits_for_its_hangover_no_other_speaker_gets_a_partial(vad: SileroVad) -> None:
    """Finals first: one worker, two speakers. While B's final is recognized and waits for the hangover
    to end, A, still talking, gets no partial decoded, so B's final never waits behind one."""
    recognizer = GrowingRecognizer()  # A speaks English, B Spanish: the calls tell them apart
    stt = SpeechToText(recognizer, vad, SttConfig(partial_interval_s=0.1))
    talking = frames(prompt_pcm("en", "agent-alreadyon") + silence(1.0), session="a")  # about 5 s of speech
    brief = frames(silence(0.3) + prompt_pcm("en", "agent-loginok") + silence(1.0), session="b")
    steps: list[tuple[str, list[str]]] = []  # per frame: whose it was, and the languages it had decoded
    final_of_b = None
    for a, b in zip(talking, (f.model_copy(update={"language": "es"}) for f in brief), strict=False):
        for frame in (a, b):
            calls_before = len(recognizer.calls)
            out = list(stt.process(frame, frame.captured_at + 0.15))
            steps.append((frame.session_id, [language for _, language in recognizer.calls[calls_before:]]))
            finished = any(isinstance(t, Transcript) and t.is_final for t in out)
            if frame.session_id == "b" and finished and final_of_b is None:
                final_of_b = len(steps) - 1
    assert final_of_b is not None
    speculated = max(i for i, (_, decoded) in enumerate(steps[:final_of_b]) if "es" in decoded)  # B's last decode
    waiting = [len(decoded) for who, decoded in steps[speculated + 1 : final_of_b] if who == "a"]
    before = [len(decoded) for who, decoded in steps[:speculated] if who == "a"]
    assert waiting and sum(waiting) == 0, "a partial was decoded while B's final waited"
    assert sum(before[-len(waiting) * 2 :]) > 0, "A was not being decoded before: the test shows nothing"


def shared_worker(vad: SileroVad, decode_s: float, late_s: dict[str, float]) -> dict[str, float]:
    """Speakers (``late_s``'s keys) talking at once on one worker whose decodes take ``decode_s`` on a
    simulated clock, each speaker's frames taken ``late_s`` after the worker could: the longest any
    speaker's captions stood still while the speaker talked."""
    now = 0.0
    recognizer = GrowingRecognizer()

    def decode_takes_time(audio: np.ndarray, language: str) -> Recognition:
        nonlocal now
        now += decode_s
        return GrowingRecognizer.transcribe(recognizer, audio, language)

    recognizer.transcribe = decode_takes_time  # type: ignore[method-assign]
    stt = SpeechToText(recognizer, vad, SttConfig(partial_interval_s=0.5))
    speech = prompt_pcm("en", "agent-alreadyon") * 2  # about 10 s without a pause long enough to end it
    updates: dict[str, list[float]] = {name: [] for name in late_s}
    for step in zip(*(frames(speech, session=name) for name in late_s), strict=True):
        for frame in step:
            now = max(now, frame.captured_at + 0.1 + 0.01)  # a worker takes a frame once it is whole
            for out in stt.process(frame, now + late_s[frame.session_id]):
                if isinstance(out, Transcript) and not out.is_final:
                    updates[frame.session_id].append(now)
    start, end = 1000.0, 1000.0 + len(speech) / 32_000
    return {name: float(max(np.diff([start, *times, end]))) for name, times in updates.items()}


def test_a_saturated_worker_shares_its_partials_out_by_who_waited_longest(vad: SileroVad) -> None:
    """Three speakers, decodes of 0.3 s: a partial every 0.5 s for each cannot be kept up. The lag
    rule skips partials, and the ones left go to whoever has waited longest, so no speaker's captions
    stand still while the others' move (without the rule, one speaker's stood still for 4.4 s)."""
    longest_waits = shared_worker(vad, decode_s=0.3, late_s={"a": 0.0, "b": 0.0, "c": 0.0})
    assert max(longest_waits.values()) < 2.0, longest_waits


def test_a_speaker_whose_frames_come_late_does_not_hold_back_the_others_partials(vad: SileroVad) -> None:
    """Late frames get no partial, so their speaker is not waited for: the others' captions go on."""
    longest_waits = shared_worker(vad, decode_s=0.1, late_s={"a": 0.0, "b": 0.0, "late": 0.5})
    assert longest_waits["late"] > 9, "the late speaker got partials: the test shows nothing"
    assert longest_waits["a"] < 1.5 and longest_waits["b"] < 1.5, longest_waits


def test_partials_stop_at_their_window_and_the_final_covers_everything(vad: SileroVad) -> None:
    recognizer = GrowingRecognizer()
    stt = SpeechToText(recognizer, vad, SttConfig(partial_interval_s=0.5, partial_window_s=2.0))
    speech = prompt_pcm("en", "agent-alreadyon")  # about 5 s of speech
    out = run(stt, silence(0.3) + speech + silence(1.0))
    partial_sizes = sorted(samples for samples, _ in recognizer.calls)[:-1]  # the last call is the final's
    assert partial_sizes and max(partial_sizes) <= 2.0 * 16_000 + 512
    assert max(samples for samples, _ in recognizer.calls) >= len(speech) / 2 * 0.9
    assert [t.is_final for t in out][-1] and sum(t.is_final for t in out) == 1


def test_an_overlong_utterance_is_cut_and_goes_on(vad: SileroVad) -> None:
    stt = SpeechToText(GrowingRecognizer(), vad, SttConfig(max_utterance_s=3.0))
    speech = prompt_pcm("en", "agent-alreadyon")  # about 5 s of speech
    out = run(stt, speech + silence(1.0))
    finals = [t for t in out if t.is_final]
    assert len(finals) >= 2
    assert finals[0].audio_end_s <= finals[1].audio_start_s + 0.05


def test_a_recognizer_that_fails_once_is_asked_again_and_nothing_is_lost(vad: SileroVad) -> None:
    speech = silence(0.3) + prompt_pcm("en", "agent-alreadyon") + silence(1.0)
    config = SttConfig(partial_interval_s=0.5)
    expected = run(SpeechToText(GrowingRecognizer(), vad, config), speech)
    failing_once = GrowingRecognizer(fail_times=1)
    assert run(SpeechToText(failing_once, vad, config), speech) == expected
    assert failing_once.failures == 1 and any(t.is_final for t in expected)


def test_a_recognizer_that_always_fails_gives_up_the_utterance_declared_and_goes_on(vad: SileroVad) -> None:
    """Partials are skipped; the final closes its utterance and raises Failed with the announcement, so
    the stage dead-letters its frame instead of retrying it (a retry would be a duplicate)."""
    broken = GrowingRecognizer(fail_times=math.inf)
    stt = SpeechToText(broken, vad, SttConfig(partial_interval_s=0.5))
    out: list[Transcript | UtteranceDropped] = []
    failures: list[Failed] = []
    utterance = prompt_pcm("en", "agent-loginok") + silence(1.0)
    for frame in frames(silence(0.3) + utterance + utterance):
        try:
            out.extend(stt.process(frame, frame.captured_at + 0.15))
        except Failed as failure:
            failures.append(failure)
            assert not stt.is_open("s1"), "the failed utterance is still open"
    assert out == [] and len(failures) == 2, "each utterance is given up on its own"
    for given_up in failures:
        [dropped] = given_up.announcements
        assert (dropped.reason, dropped.stage, dropped.language) == ("error", "stt", "en")
        assert isinstance(given_up.cause, RuntimeError)
    assert failures[0].announcements[0].utterance_id != failures[1].announcements[0].utterance_id
    assert broken.calls == [] and broken.failures >= 2 * 3, "the final was not asked three times"


SURE = (0.03, -0.3)
"""(no-speech probability, mean log-probability) as Whisper scores a recorded "Thank you."."""
SILENT = (0.97, -2.9)
"""... and as it scores room noise it decodes as "you"."""
DOUBTFUL = (0.45, -0.9)


@pytest.mark.parametrize(
    ("hypothesis", "evidence", "expected"),
    [
        ("Thank you.", SURE, "Thank you."),
        ("Bye.", SURE, "Bye."),
        ("you", SURE, "you"),
        ("you", SILENT, ""),
        ("I think that is fine", SILENT, ""),
        ("Thank you.", DOUBTFUL, ""),
        ("Thanks for watching!", DOUBTFUL, ""),
        ("Subtítulos realizados por la comunidad de Amara.org", DOUBTFUL, ""),
        ("Thank you for the report.", DOUBTFUL, "Thank you for the report."),
        ("No.", DOUBTFUL, "No."),
        ("[Music]", SURE, ""),
        ("so so so so so so so so", SURE, "so"),
        ("I think that that is fine", SURE, "I think that that is fine"),
        ("la la la la la la bonjour", SURE, "la"),
    ],
)
def test_hallucinations_are_judged_by_evidence_and_the_phrase_list_only_breaks_ties(
    hypothesis: str, evidence: tuple[float, float], expected: str
) -> None:
    assert clean_hypothesis(Recognition(hypothesis, *evidence)) == expected


@pytest.mark.parametrize(
    ("hypothesis", "expected"),
    [
        # Whisper's greedy decoder looping after a short prompt (vm-calldiffnum, offline, tiny.en):
        ("Press 2 to enter a different number. Press 2 to enter a different number. Press 2",
         "Press 2 to enter a different number."),
        ("Messages Messages Messages Messages Messages Messages", "Messages"),
        ("No, no, no.", "No, no, no."),
        ("Enter your number. Thank you. Enter your pin.", "Enter your number. Thank you. Enter your pin."),
    ],
)  # fmt: skip
def test_a_clause_said_twice_in_a_row_is_the_decoder_looping(hypothesis: str, expected: str) -> None:
    assert clean_hypothesis(Recognition(hypothesis, *SURE)) == expected


@pytest.mark.parametrize(
    ("committed", "hypothesis", "after"),
    [
        ("marque el número 1", "Marque el número uno, ahora.", "ahora."),  # a committed word rewritten
        ("para guardar", "Para guardar presione 1.", "presione 1."),
        ("the pound", "the pound key. Thank you.", "key. Thank you."),
        ("a b c d", "a b x d e f", "e f"),
        ("a b c d e", "a b c f g", ""),  # the hypothesis changed the last committed words: they stay
    ],
)
def test_a_hypothesis_continues_where_it_aligns_with_the_committed_words(
    committed: str, hypothesis: str, after: str
) -> None:
    assert continuation(committed.split(), hypothesis.split()) == after.split()
    final = LocalAgreement()
    final.committed = committed.split()
    assert final.final(hypothesis) == " ".join([*committed.split(), *after.split()])


@pytest.mark.parametrize(
    ("committed", "windowed", "after"),
    [
        # The window starts inside the committed words: placed where their last ones are said.
        ("Thank you for calling Super Awesome company. If you", "awesome company. If you know your party's",
         "know your party's"),
        ("Thank you for calling Super Awesome company", "Super Awesome Company, Waldo's", "Waldo's"),
        # Only a lone common word is shared, far back: placing it there would skip what lies between.
        ("Thank you for calling Super Awesome company", "products. If you know your party's extension, you may",
         None),
        ("Thank you for calling", "premier provider of perfect products", None),  # nothing shared
    ],
)  # fmt: skip
def test_a_windowed_hypothesis_is_placed_only_where_it_meets_the_committed_end(
    committed: str, windowed: str, after: str | None
) -> None:
    placed = continuation(committed.split(), windowed.split(), windowed=True)
    assert placed == (None if after is None else after.split())


def words(text: str) -> list[str]:
    return text.split()


def test_an_utterance_cut_from_a_longer_one_does_not_say_its_end_again() -> None:
    before = words("Please enter your password followed by the pound key. Thank you for calling super awesome company.")
    assert overlap(before, words("company, while those premier providers")) == 1
    assert overlap(before, words("awesome company. Waldo's premier")) == 2
    assert overlap(before, words("Waldo's premier provider of perfect products.")) == 0
    assert overlap(before, words("If you know, please enter your password followed by")) == 0  # said again, later
    cut = LocalAgreement(preceding=before)
    cut.update("super awesome company. Waldo's premier provider")
    cut.update("awesome company. Waldo's premier provider of")
    assert cut.text == "Waldo's premier provider"


@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "A,", "b."]), max_size=8), min_size=1, max_size=12))
def test_local_agreement_only_grows(hypotheses: list[list[str]]) -> None:
    agreement = LocalAgreement()
    shown: list[str] = []
    for words in hypotheses:
        if agreement.update(" ".join(words)):
            shown.append(agreement.text)
    texts = [*shown, agreement.final(" ".join(hypotheses[-1]))]
    for earlier, later in pairwise(texts):
        assert later.startswith(earlier)
