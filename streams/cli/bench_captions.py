"""``dragoman bench captions``: what people read while someone talks, word by word.

Each of ``--rooms`` speakers streams the same continuous reading (recorded prompts a breath apart)
in real time, as PROTOCOL.md's clients do, and a captions socket in the speaker's language records
every caption event as it arrives. The recording's words are timed offline (faster-whisper's word
timestamps), and every word is found in what the screen showed by aligning the two:

- **first shown**: a word's first appearance, tentative words included, after the word ended;
- **committed**: its first appearance in confirmed text (a partial's ``text``, or a final);
- **longest wait**: the longest stretch of speech with no caption update at all;
- every time is the client's, as it sent (:mod:`streams.cli.realtime`); **client behind** is how
  far behind real time the bench's own clients sent at worst, the delay those figures leave out;
- **streaming WER** of the finals against the prompts' transcripts, beside the offline WER of the
  same recognizer on the whole recording, and the words the finals doubled that offline did not.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import numpy as np

from schemas import SAMPLE_RATE
from streams.cli.measures import percentile
from streams.cli.realtime import SentAudio, play
from web.ingest import BYTES_PER_SECOND

WordTiming = tuple[float, float, str]
"""(start s, end s, word) in the recording."""
Normalize = Callable[[str], str]
"""How words are compared (the STT stage's own normalization: no case, accents or punctuation)."""
WordErrorRate = Callable[[list[str], list[str]], float]
DRAIN_S = 6.0
"""How long a room listens after the reading for its last final."""


@dataclass(frozen=True)
class CaptionEvent:
    at: float
    utterance_id: str
    text: str
    tentative: str
    is_final: bool


@dataclass
class Stream:
    """One speaker's reading and what its captions socket got."""

    sent: SentAudio = field(default_factory=SentAudio)
    """When the recording went out, frame by frame: a word's time is when it was sent."""
    events: list[CaptionEvent] = field(default_factory=list)

    def said_by(self, seconds: float) -> float:
        """Wall-clock time at which the recording's first ``seconds`` had been sent."""
        return self.sent.ended_at(round(seconds * SAMPLE_RATE) * 2)  # whole samples


def _normalized(words: Sequence[str], normalize: Normalize) -> list[str]:
    return [normalize(w) for w in words]


def _matched(reference: list[str], shown: list[str]) -> set[int]:
    """Indices of the reference words the shown words align with."""
    blocks = difflib.SequenceMatcher(None, reference, shown, autojunk=False).get_matching_blocks()
    return {block.a + k for block in blocks for k in range(block.size)}


@dataclass(frozen=True)
class WordLags:
    shown: list[float]
    """Per word shown, seconds from its end to its first display."""
    committed: list[float]
    never_shown: int


def word_lags(stream: Stream, words: Sequence[WordTiming], normalize: Normalize) -> WordLags:
    """Per reference word, seconds from its end to its first display and to its first commitment."""
    reference = _normalized([w for _, _, w in words], normalize)
    screen: dict[str, CaptionEvent] = {}  # utterance id → its latest caption, in order of first appearance
    first_shown: dict[int, float] = {}
    first_committed: dict[int, float] = {}
    for event in stream.events:
        screen[event.utterance_id] = event
        shown = [w for e in screen.values() for w in (e.text.split() + ([] if e.is_final else e.tentative.split()))]
        committed = [w for e in screen.values() for w in e.text.split()]
        for index in _matched(reference, _normalized(shown, normalize)):
            first_shown.setdefault(index, event.at)
        for index in _matched(reference, _normalized(committed, normalize)):
            first_committed.setdefault(index, event.at)
    ends = [stream.said_by(end) for _, end, _ in words]
    return WordLags([first_shown[i] - ends[i] for i in sorted(first_shown)],
                    [first_committed[i] - ends[i] for i in sorted(first_committed)],
                    len(words) - len(first_shown))  # fmt: skip


def longest_wait(stream: Stream, words: Sequence[WordTiming]) -> float:
    """The longest stretch of speech (from the first word's start to the last one's end) without a caption update."""
    start, end = stream.said_by(words[0][0]), stream.said_by(words[-1][1])
    marks = [start, *sorted(e.at for e in stream.events if start < e.at < end), end]
    return max(b - a for a, b in itertools.pairwise(marks))


def finals_text(stream: Stream) -> str:
    finals: dict[str, str] = {}
    for event in stream.events:
        if event.is_final:
            finals[event.utterance_id] = event.text
    return " ".join(finals.values())


def doubled_words(text: str, normalize: Normalize) -> int:
    words = [w for w in _normalized(text.split(), normalize) if w]
    return sum(a == b for a, b in itertools.pairwise(words))


async def read_aloud(url: str, secret: str, rooms: int, pcm: bytes, language: str) -> list[Stream]:
    """``rooms`` speakers at once, each streaming ``pcm`` in real time, with a captions socket each."""
    from web.auth import mint

    ws_url = url.replace("http", "ws", 1)
    streams = [Stream() for _ in range(rooms)]
    async with aiohttp.ClientSession() as http:
        opened = []
        for index in range(rooms):
            room = f"captions-{index}-{int(time.time())}"
            speaker = await http.ws_connect(f"{ws_url}/ws/audio/{room}?token={mint(secret, room, 'reader')}"
                                            f"&speak={language}&listen={language}")  # fmt: skip
            viewer = await http.ws_connect(f"{ws_url}/ws/captions/{room}?token={mint(secret, room, 'viewer')}"
                                           f"&language={language}")  # fmt: skip
            await speaker.receive()  # `session`
            opened.append((speaker, viewer))

        async def listen(viewer: aiohttp.ClientWebSocketResponse, stream: Stream) -> None:
            async for message in viewer:
                event = json.loads(message.data)
                if event.get("event") == "caption" and not event.get("backlog"):
                    stream.events.append(CaptionEvent(time.time(), event["utterance_id"], event["text"],
                                                      event.get("tentative", ""), event["is_final"]))  # fmt: skip

        async def speak(speaker: aiohttp.ClientWebSocketResponse, stream: Stream) -> None:
            silence = b"\0" * (2 * BYTES_PER_SECOND)  # 2 s: the reader stops
            stream.sent = await play(speaker, pcm + silence)

        listeners = [asyncio.create_task(listen(v, s)) for (_, v), s in zip(opened, streams, strict=True)]
        await asyncio.gather(*(speak(sp, s) for (sp, _), s in zip(opened, streams, strict=True)))
        await asyncio.sleep(DRAIN_S)
        for task in listeners:
            task.cancel()
        for speaker, viewer in opened:
            await speaker.close()
            await viewer.close()
    return streams


def summarize(
    streams: list[Stream], words: Sequence[WordTiming], said: Sequence[str], offline_wer: float,
    offline_text: str, normalize: Normalize, wer: WordErrorRate,
) -> dict[str, object]:  # fmt: skip
    lags = [word_lags(s, words, normalize) for s in streams]
    shown = [x for lag in lags for x in lag.shown]
    committed = [x for lag in lags for x in lag.committed]
    finals = [finals_text(s) for s in streams]

    def doubled(text: str) -> int:
        return doubled_words(text, normalize)

    last_final = [max((e.at for e in s.events if e.is_final), default=float("nan")) - s.said_by(words[-1][1])
                  for s in streams]  # fmt: skip
    return {
        "rooms": len(streams),
        "words": len(words),
        "shown_p50_s": round(percentile(shown, 0.5), 3),
        "shown_p90_s": round(percentile(shown, 0.9), 3),
        "shown_max_s": round(max(shown, default=float("nan")), 3),
        "committed_p50_s": round(percentile(committed, 0.5), 3),
        "committed_p90_s": round(percentile(committed, 0.9), 3),
        "never_shown": sum(lag.never_shown for lag in lags),
        "longest_wait_s": round(max(longest_wait(s, words) for s in streams), 3),
        "last_final_after_speech_p50_s": round(float(np.median(last_final)), 3),
        "client_behind_max_s": round(max(s.sent.most_behind_s() for s in streams), 3),
        "wer_streaming": round(float(np.mean([wer([" ".join(said)], [f]) for f in finals])), 3),
        "wer_offline": round(offline_wer, 3),
        "doubled_words_beyond_offline": max(0, max(map(doubled, finals)) - doubled(offline_text)),
    }
