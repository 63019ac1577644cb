"""``dragoman bench languages``: one multilingual meeting, measured live from speech.

One room. A speaker per language streams the parallel prompts (:func:`agents.bench.parallel_prompts`)
in real time, all at once with staggered starts; an audio listener per language hears the meeting
in it, and a captions viewer reads everything. Everything goes through the gateway as PROTOCOL.md
says. Utterances are matched to prompts by end of speech (as in :mod:`streams.cli.bench_load`).

Measured, per speaking language: streaming WER of its finals against the prompts' references;
per pair: chrF and BLEU of the final translated captions against the target language's
references (speech recognition and translation together), what did not arrive (neither delivered
nor announced), and for pivoted and direct pairs the final translated caption and the first
translated audio after end of speech, p50 and p90. A listener in a language that some speakers'
languages do not reach counts the ``language_unreachable`` notices it was sent and anything that
reached it from those speakers (must be nothing).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from schemas import SAMPLE_RATE
from streams.cli.bench_load import PAUSE_S, Room, Utterance, _speak
from streams.cli.measures import percentile
from streams.languages import LanguageCatalogue


@dataclass
class Heard:
    """What one speaker's utterances became, by prompt index."""

    room: Room
    user_id: str
    finals: dict[int, list[str]] = field(default_factory=dict)
    translated: dict[tuple[int, str], str] = field(default_factory=dict)
    translated_at: dict[tuple[int, str], float] = field(default_factory=dict)
    first_audio_at: dict[tuple[int, str], float] = field(default_factory=dict)
    audio_ended: set[tuple[int, str]] = field(default_factory=set)
    announced: set[tuple[int, str]] = field(default_factory=set)


@dataclass
class Meeting:
    speakers: dict[str, Heard]
    """Speaking language → what became of its speaker's prompts."""
    ids: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Utterance id → (speaking language, prompt index), from the original final."""
    unreachable: dict[str, set[str]] = field(default_factory=dict)
    """Listening language → the speaking languages it was told it cannot be reached from."""
    leaked: dict[str, int] = field(default_factory=dict)
    """Listening language → messages it got from speakers it was told are unreachable."""


def _speaker_of(meeting: Meeting, speaker_id: str) -> tuple[str, Heard] | None:
    return next(((lang, h) for lang, h in meeting.speakers.items() if h.user_id == speaker_id), None)


def _on_caption(meeting: Meeting, event: dict[str, Any], now: float) -> None:
    found = _speaker_of(meeting, event["speaker_id"])
    if found is None:
        return
    speak, heard = found
    index = heard.room.index_of(event["timestamp_ms"])
    if index is None:
        return
    language = event["language"]
    if event["event"] == "dropped":
        heard.announced.add((index, language))
    elif event["event"] == "caption" and event["is_final"]:
        if language == speak:
            heard.finals.setdefault(index, []).append(event["text"])
            meeting.ids[event["utterance_id"]] = (speak, index)
        else:
            previous = heard.translated.get((index, language))
            heard.translated[(index, language)] = f"{previous} {event['text']}" if previous else event["text"]
            heard.translated_at[(index, language)] = now


def _on_listener(meeting: Meeting, listen: str, event: dict[str, Any], now: float) -> None:
    kind = event.get("type")
    if kind == "language_unreachable":
        meeting.unreachable.setdefault(listen, set()).add(event["source_language"])
    elif kind in ("audio_start", "audio_end"):
        speak, index = meeting.ids.get(event["utterance_id"], ("", -1))
        if speak in meeting.unreachable.get(listen, ()):
            meeting.leaked[listen] = meeting.leaked.get(listen, 0) + 1
        if index < 0:
            return
        heard = meeting.speakers[speak]
        if kind == "audio_start":
            heard.first_audio_at.setdefault((index, listen), now)
        else:
            heard.audio_ended.add((index, listen))


async def _receive(ws: aiohttp.ClientWebSocketResponse, meeting: Meeting, listen: str | None) -> None:
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        event, now = json.loads(message.data), time.time()
        if listen is None:
            _on_caption(meeting, event, now)
        else:
            _on_listener(meeting, listen, event, now)


async def run_meeting(
    url: str, secret: str, speech: Mapping[str, Sequence[bytes]], listeners: Sequence[str], drain_s: float = 15.0
) -> Meeting:
    """One room: a speaker per language of ``speech`` (trimmed recordings, streamed in real time) and an
    audio listener per language of ``listeners``; returns what arrived by ``drain_s`` after the last."""
    from web.auth import mint

    ws_url = url.replace("http", "ws", 1)
    room_id = f"languages-{uuid.uuid4().hex[:8]}"
    rooms = {lang: Room(room_id, [Utterance() for _ in pcm], lang, lang) for lang, pcm in speech.items()}
    meeting = Meeting({lang: Heard(room, f"speaker-{lang}") for lang, room in rooms.items()})
    async with aiohttp.ClientSession() as http:

        async def connect(endpoint: str, user: str, query: str) -> aiohttp.ClientWebSocketResponse:
            return await http.ws_connect(f"{ws_url}/ws/{endpoint}/{room_id}?token={mint(secret, room_id, user)}{query}")

        viewer = await connect("captions", "viewer", "")
        heard = [(await connect("audio", f"listener-{lang}", f"&speak=en&listen={lang}"), lang) for lang in listeners]
        speakers = {lang: await connect("audio", f"speaker-{lang}", f"&speak={lang}&listen={lang}") for lang in speech}
        for ws in [*(ws for ws, _ in heard), *speakers.values()]:
            await ws.receive()  # `session`
        await asyncio.sleep(2.0)  # the translate stage's room table sees every listener
        tasks = [asyncio.create_task(_receive(viewer, meeting, None))]
        tasks += [asyncio.create_task(_receive(ws, meeting, lang)) for ws, lang in heard]
        cycle_s = sum(len(p) / 2 / SAMPLE_RATE + PAUSE_S for p in next(iter(speech.values())))
        stagger = cycle_s / len(speech) / len(next(iter(speech.values())))
        await asyncio.gather(*(
            _speak(speakers[lang], rooms[lang], pcm, i * stagger) for i, (lang, pcm) in enumerate(speech.items())
        ))  # fmt: skip
        await asyncio.sleep(drain_s)
        for task in tasks:
            task.cancel()
        for ws in [viewer, *(ws for ws, _ in heard), *speakers.values()]:
            await ws.close()
    return meeting


def summarize(
    meeting: Meeting, references: Mapping[str, Sequence[str]], catalogue: LanguageCatalogue, listeners: Sequence[str]
) -> dict[str, Any]:
    """The matrix: WER per speaking language, and per pair quality, what is missing and latency."""
    from agents.bench import chrf_bleu, word_error_rate

    report: dict[str, Any] = {"wer": {}, "pairs": [], "latency": {}, "unreachable": {}}
    latency: dict[str, dict[str, list[float]]] = {"direct": {"caption": [], "audio": []},
                                                  "pivot": {"caption": [], "audio": []}}  # fmt: skip
    for speak, heard in meeting.speakers.items():
        count = len(heard.room.utterances)
        finals = [" ".join(heard.finals.get(i, [])) for i in range(count)]
        report["wer"][speak] = round(word_error_rate(list(references[speak]), finals), 3)
        for listen in listeners:
            if listen == speak:
                continue
            route = catalogue.languages[speak].translations.get(listen)
            if route is None:
                continue
            indices = range(count)
            delivered = [i for i in indices if (i, listen) in heard.translated]
            out = [heard.translated.get((i, listen), "") for i in indices]
            # A language without references (one only listened in) is counted, not scored.
            chrf, bleu = (
                chrf_bleu([references[listen][i] for i in indices], out) if listen in references else (None, None)
            )

            audio_done = {i for i in indices if (i, listen) in heard.audio_ended}
            kind = "pivot" if route.via else "direct"
            for i in delivered:
                ended = heard.room.utterances[i].ended_at
                latency[kind]["caption"].append(heard.translated_at[(i, listen)] - ended)
                if (i, listen) in heard.first_audio_at:
                    latency[kind]["audio"].append(heard.first_audio_at[(i, listen)] - ended)
            report["pairs"].append({
                "pair": f"{speak}>{listen}", "via": route.via, "chrf": chrf, "bleu": bleu,
                "captions_missing": _missing(heard, set(delivered), count, listen),
                "audio_missing": _missing(heard, audio_done, count, listen),
                "announced": sum(1 for i in indices if (i, listen) in heard.announced or (i, speak) in heard.announced),
            })  # fmt: skip
    for kind, figures in latency.items():
        report["latency"][kind] = {
            f"{what}_{q}_s": round(percentile(values, p), 3)
            for what, values in figures.items() for q, p in (("p50", 0.5), ("p90", 0.9))
        }  # fmt: skip
    for listen in listeners:
        expected = sorted(s for s in meeting.speakers if s != listen and not catalogue.reachable(s, listen))
        if expected:
            report["unreachable"][listen] = {"expected": expected, "told": sorted(meeting.unreachable.get(listen, ())),
                                             "received_from_them": meeting.leaked.get(listen, 0)}  # fmt: skip
    return report


def _missing(heard: Heard, arrived: set[int], count: int, listen: str) -> int:
    """Utterances that neither arrived nor were announced (in the speaker's language or the listener's)."""
    speak = heard.room.speak
    return sum(1 for i in range(count) if i not in arrived and not {(i, speak), (i, listen)} & heard.announced)


def print_report(report: Mapping[str, Any]) -> None:
    print("streaming WER by speaking language: " + ", ".join(f"{k} {v}" for k, v in report["wer"].items()))
    columns = ["pair", "via", "chrf", "bleu", "captions_missing", "audio_missing", "announced"]
    print(" | ".join(columns))
    for row in report["pairs"]:
        print(" | ".join(str(row[c]) for c in columns))
    for kind, figures in report["latency"].items():
        print(f"{kind} pairs: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    for listen, told in report["unreachable"].items():
        print(f"{listen} listener: {told}")
    print(json.dumps({"bench": "languages", **report}, ensure_ascii=False))
