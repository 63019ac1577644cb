"""What a recognizer's hypothesis says, judged and merged: the text half of speech to text.

Pure functions over words, which :mod:`agents.stt` applies to every hypothesis:

- :func:`clean_hypothesis` judges hallucinations by evidence (the recognizer's own, and the
  VAD's) and cuts repetition loops;
- :class:`LocalAgreement` turns a stream of hypotheses of one utterance into committed words,
  which only grow, and a tentative tail;
- :func:`continuation` places a hypothesis after the committed words by aligning the two.
"""

from __future__ import annotations

import difflib
import re
import string
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from agents.engines.protocols import Recognition

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


SHORT_LOOP_REPEATS = 3
"""A phrase of up to 3 words may come 3 times in a row ("no, no, no"); a 4th is the decoder looping."""
LONG_LOOP_WORDS = 4
"""A run of this many words or more said twice in a row is a loop ("Press 7 to delete this message.
Press 7 to delete this message. Press 7 to delete"): people do not repeat a clause back to back."""
MAX_COMPRESSION_RATIO = 2.4
"""Whisper's own guard: text that zlib squeezes more than this is repetition (``compression_ratio_threshold``)."""


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _truncate_loops(words: list[str]) -> list[str]:
    """Cut a repetition loop ("la la la la ...", a sentence said twice) after its first occurrence;
    then, as Whisper does, treat text that compresses too well as repetition, and shorten it."""
    keys = [normalize_word(w) for w in words]
    for start in range(len(keys)):
        for size in range(1, (len(keys) - start) // 2 + 1):
            gram = keys[start : start + size]
            repeats = 1
            while keys[start + size * repeats : start + size * (repeats + 1)] == gram:
                repeats += 1
            if repeats > SHORT_LOOP_REPEATS or (repeats > 1 and size >= LONG_LOOP_WORDS):
                words, keys = words[: start + size], keys[: start + size]
                break
    while len(words) > 1 and compression_ratio(" ".join(words)) > MAX_COMPRESSION_RATIO:
        words = words[:-1]
    return words


def continuation(committed: Sequence[str], words: Sequence[str], windowed: bool = False) -> list[str] | None:
    """The words of a hypothesis that come after the ``committed`` ones.

    The two are aligned on their normalized words (difflib), not cut at ``len(committed)``: a
    hypothesis that merges, splits or rewrites a committed word ("número 1" / "número uno",
    "ahora" / "a hora") then adds neither a second copy of it nor a gap. Committed words the
    hypothesis changed after the last one they agree on count one for one.

    A ``windowed`` hypothesis (of the utterance's last seconds only) starts somewhere inside the
    committed words, so only a run of two words or more that reaches their last ones places it: a
    lone common word further back ("Thank *you* for calling" / "If *you* know") would skip every word
    in between. Without such a run it cannot be placed: None.
    """
    if not committed:
        return list(words)
    runs = _shared_runs(committed, words)
    if windowed:
        runs = [m for m in runs if m.size >= min(2, len(committed)) and _reaches_end(committed, m, PLACED_WITHIN)]
        if not runs:
            return None
    elif not runs:
        return list(words[len(committed) :])
    return list(words[_end_of_first(committed, runs[-1]) :])


PLACED_WITHIN = 2
"""Committed words after its last shared run that a windowed hypothesis may have heard as something else."""


PRECEDING_WORDS = 30
"""How far back an utterance cut from a longer one looks for words it repeats (the cut is in the longer
one's second half: at most half of ``max_utterance_s`` of audio, 7.5 s, is said again)."""


OVERLAP_STARTS_WITHIN = 2
"""Words a cut utterance's hypothesis may start with before it says the preceding one's end again:
the cut falls inside a word, which the recognizer hears as something else every time."""


def overlap(preceding: Sequence[str], words: Sequence[str]) -> int:
    """How many leading ``words`` say again the end of ``preceding``: the two align (difflib) in a run
    that starts within the first words of ``words`` and reaches the end of ``preceding``. A phrase said
    again later ("please enter your ...") does not count: it starts too late, or ends too early."""
    runs = _shared_runs(preceding, words[: len(preceding) + 3])
    ending = [m for m in runs if _reaches_end(preceding, m, 1) and m.b <= OVERLAP_STARTS_WITHIN]
    return _end_of_first(preceding, ending[-1]) if ending else 0


def _shared_runs(first: Sequence[str], second: Sequence[str]) -> list[difflib.Match]:
    """The runs of words two sequences share, compared normalized, in order (difflib)."""
    a, b = [normalize_word(w) for w in first], [normalize_word(w) for w in second]
    return [m for m in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks() if m.size]


def _reaches_end(first: Sequence[str], run: difflib.Match, within: int) -> bool:
    """Whether ``run`` ends within ``within`` words of the end of ``first``."""
    return run.a + run.size >= len(first) - within


def _end_of_first(first: Sequence[str], run: difflib.Match) -> int:
    """Where ``first`` ends in the second sequence: after ``run``, its words past the run counted one for one."""
    return run.b + len(first) - run.a


NO_SPEECH_PROB = 0.6
MIN_AVG_LOGPROB = -1.0
"""Whisper's own rule for "nothing was said": the no-speech probability above 0.6 *and* the text's
mean log-probability below -1. Measured with tiny.en on recordings: "Thank you.", "Goodbye!" and
"No." score no-speech 0.03-0.06 and log-probability -0.2 to -0.7; silence, noise, mains hum,
breathing and a click all decode as "you" or "." with no-speech 0.82-0.99 and -1.3 to -3.1."""
DOUBTFUL_NO_SPEECH_PROB = 0.3
"""Below the rule but above this, a known silence phrase is taken for one (the phrase list's tie)."""


SOLID_VOICED_S = 0.2
SOLID_SPEECH_PROBABILITY = 0.85
"""The VAD's evidence of a person talking: this much voiced audio, at this mean speech probability.
Short words alone, in three voices and at three speeds, are 0.26–0.67 s of voice at a mean probability
of 0.90–0.99 (espeak-ng's slow "Thank you.", which Whisper doubts at no-speech 0.39: 0.67 s at 0.98;
its fast "Bye.", log-probability -1.31 and a silence phrase: 0.26 s at 0.93)."""


@dataclass(frozen=True)
class VoiceEvidence:
    """What the VAD heard in the audio a hypothesis was made of."""

    voiced_s: float
    mean_probability: float
    """Silero's mean speech probability over the voiced windows."""

    @property
    def solid(self) -> bool:
        return self.voiced_s >= SOLID_VOICED_S and self.mean_probability >= SOLID_SPEECH_PROBABILITY


def heard_speech(recognition: Recognition) -> bool:
    return not (recognition.no_speech_prob > NO_SPEECH_PROB and recognition.avg_logprob < MIN_AVG_LOGPROB)


def clean_hypothesis(recognition: Recognition, voice: VoiceEvidence | None = None) -> str:
    """What was said, without annotations and loops; "" when the evidence says nothing was.

    The known silence phrases count only where the recognizer's evidence is doubtful and the VAD's
    is not solid: a confident "Thank you." or "Bye.", or one over solid voiced audio, is a person
    talking, and stays.
    """
    if not heard_speech(recognition):
        return ""
    words = _truncate_loops(_BRACKETED.sub(" ", recognition.text).split())
    doubtful = recognition.no_speech_prob > DOUBTFUL_NO_SPEECH_PROB or recognition.avg_logprob < MIN_AVG_LOGPROB
    if doubtful and not (voice and voice.solid) and normalize_text(" ".join(words)) in _HALLUCINATIONS:
        return ""
    return " ".join(words)


class LocalAgreement:
    """LocalAgreement-2: commit only the words two consecutive hypotheses agree on.

    ``committed`` only grows; words once committed keep their surface form, so
    every later caption of the utterance, the final included, starts with them.
    Each hypothesis is read from where it aligns with the committed words
    (:func:`continuation`), and ``tentative`` is what the newest one says after
    them that is not agreed yet.
    """

    def __init__(self, preceding: Sequence[str] = ()) -> None:
        """``preceding``: the words of the utterance this one was cut from, which its first hypotheses
        may say again (they were committed from audio past the cut)."""
        self.committed: list[str] = []
        self.tentative: list[str] = []
        self._preceding = list(preceding)[-PRECEDING_WORDS:]

    def _own(self, hypothesis: str) -> list[str]:
        """The hypothesis's words, without those that repeat the preceding utterance's last ones."""
        words = hypothesis.split()
        return words[overlap(self._preceding, words) :] if self._preceding and not self.committed else words

    def update(self, hypothesis: str, windowed: bool = False) -> bool:
        """Take a new hypothesis (``windowed``: of the utterance's last seconds only); True when the
        committed prefix grew."""
        words = continuation(self.committed, self._own(hypothesis), windowed)
        if words is None:
            return False
        agreed = 0
        for a, b in zip(self.tentative, words, strict=False):
            if normalize_word(a) != normalize_word(b):
                break
            agreed += 1
        self.committed.extend(words[:agreed])
        self.tentative = words[agreed:]
        return agreed > 0

    def final(self, hypothesis: str) -> str:
        """The final text: every committed word, then what the last hypothesis says after them."""
        return " ".join(self.committed + (continuation(self.committed, self._own(hypothesis)) or []))

    @property
    def text(self) -> str:
        return " ".join(self.committed)
