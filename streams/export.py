"""A meeting's finals as subtitles or a transcript: WebVTT, SubRip, JSON or plain text.

Pure: records in, text out. Cue times are relative to the meeting's start and come from the
finals themselves (``speech_started_at`` to ``speech_ended_at``, wall clock); the speaker's name
comes from the room's ``joined`` events. Cues are written by the subtitle libraries (webvtt-py,
srt), not by hand.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import srt
import webvtt
from webvtt.models import Timestamp

from schemas import RoomEvent, RoomEventKind, SpokenText

FORMATS = ("vtt", "srt", "json", "txt")


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    speaker_id: str
    speaker: str
    language: str
    utterance_id: str
    text: str


@dataclass(frozen=True)
class Subtitles:
    room_id: str
    language: str | None
    """None: each utterance in the language it was spoken."""
    started_at: float
    """Wall-clock start of the meeting (Unix seconds): every cue time is relative to it."""
    cues: tuple[Cue, ...]
    replay_id: str | None = None


def subtitles(
    room_id: str,
    language: str | None,
    events: Iterable[RoomEvent],
    finals: Iterable[SpokenText],
    started_at: float | None = None,
    replay_id: str | None = None,
) -> Subtitles:
    """One cue per utterance (its last final wins), in order of speech, named after its speaker.

    ``started_at`` defaults to the room's first ``joined`` event (or, without one, the first speech).
    """
    events = list(events)
    names = {e.user_id: e.name for e in events if e.name and e.kind is not RoomEventKind.LEFT}
    latest: dict[str, SpokenText] = {}
    for final in finals:
        if final.is_final and final.room_id == room_id and (language is None or final.language == language):
            latest[final.utterance_id] = final
    ordered = sorted(latest.values(), key=lambda f: (f.speech_started_at, f.utterance_id))
    if started_at is None:
        joins = [e.at for e in events if e.kind is RoomEventKind.JOINED]
        starts = joins or [f.speech_started_at for f in ordered] or [0.0]
        started_at = min(starts)
    cues = tuple(
        Cue(
            start_s=max(0.0, f.speech_started_at - started_at),
            end_s=max(0.0, f.speech_ended_at - started_at),
            speaker_id=f.speaker_id,
            speaker=names.get(f.speaker_id) or f.speaker_id,
            language=f.language,
            utterance_id=f.utterance_id,
            text=f.text,
        )
        for f in ordered
    )
    return Subtitles(room_id, language, started_at, cues, replay_id)


def render(subs: Subtitles, fmt: str) -> str:
    if fmt == "vtt":
        captions = [
            webvtt.Caption(_vtt_time(c.start_s), _vtt_time(c.end_s), f"<v {c.speaker}>{c.text}") for c in subs.cues
        ]
        return str(webvtt.WebVTT(captions=captions).content)
    if fmt == "srt":
        return str(
            srt.compose(
                srt.Subtitle(i, _delta(c.start_s), _delta(c.end_s), f"{c.speaker}: {c.text}")
                for i, c in enumerate(subs.cues, start=1)
            )
        )
    if fmt == "json":
        return json.dumps({**asdict(subs), "cues": [asdict(c) for c in subs.cues]}, ensure_ascii=False, indent=2)
    if fmt == "txt":
        return "".join(f"[{_delta(round(c.start_s))}] {c.speaker}: {c.text}\n" for c in subs.cues)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _delta(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def _vtt_time(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    minutes, ms = divmod(milliseconds, 60_000)
    hours, minutes = divmod(minutes, 60)
    return str(Timestamp(hours, minutes, ms // 1000, ms % 1000))
