"""Replays: a meeting read back from the log, exported or reprocessed (``dragoman replay``).

Reprocessing feeds a room's recorded ``audio.raw`` (or its ``text.original`` finals, when it
starts at translate) to a :class:`ReplayPipeline`, the real stage transforms chained in one
process, and appends what they make to the ``replay.*`` topics
(:data:`~streams.topics.REPLAY_TOPICS`): keyed by the replay's id, with the id and the run in
headers. No gateway reads those topics, so live sockets never see a replay; live workers never see
its work either, so a replay takes no turn from a live meeting's queue.

A replay's id names what it does (room, range, stages, languages), so running the same replay
again makes a new *run* of the same id, and readers of a replay take its latest run only: the new
results replace the old instead of adding to them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tqdm import tqdm

from schemas import SAMPLE_RATE, AudioFrame, Envelope, RoomEvent, SpokenText, SynthesizedAudio, Transcript, Translation
from streams import history
from streams.export import Subtitles, subtitles
from streams.topics import AUDIO_RAW, REPLAY_TOPICS, ROOM_EVENTS, TEXT_ORIGINAL, TEXT_TRANSLATED

REPLAY_ID_HEADER = "dragoman-replay-id"
REPLAY_RUN_HEADER = "dragoman-replay-run"


class ReplayPipeline(Protocol):
    """Stage transforms chained: a recorded input in, every output of every stage out."""

    def feed(self, record: AudioFrame | Transcript) -> Iterator[Envelope]: ...

    def close(self) -> Iterator[Envelope]:
        """Whatever is still open at the end of the recording (an utterance cut off mid-speech)."""
        ...

    @property
    def dropped(self) -> Counter[str]:
        """Inputs the transforms dropped on purpose, by reason."""
        ...


@dataclass(frozen=True)
class ReplayRequest:
    room_id: str
    stages: tuple[str, ...]
    """Consecutive stages from stt, translate or tts on (``stt,translate,tts``, ``translate,tts``)."""
    languages: tuple[str, ...]
    since: float | None = None
    until: float | None = None
    replay_id: str | None = None

    @property
    def id(self) -> str:
        """The given id, or one made from what the replay does: the same replay, the same id."""
        if self.replay_id:
            return self.replay_id
        what = f"{self.room_id}|{self.since}|{self.until}|{','.join(self.stages)}|{','.join(self.languages)}"
        return f"{self.room_id}-{hashlib.sha256(what.encode()).hexdigest()[:8]}"


@dataclass
class ReplaySummary:
    replay_id: str
    run: int
    inputs: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    finals: int = 0
    translations: Counter[str] = field(default_factory=Counter)
    spoken: Counter[str] = field(default_factory=Counter)
    """Utterances synthesized, by language."""
    dropped: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        speed = f", {self.audio_s / self.wall_s:.1f}× real time" if self.audio_s and self.wall_s else ""
        return [
            f"replay {self.replay_id} run {self.run}: {self.inputs} records in {self.wall_s:.1f} s"
            f" ({self.audio_s:.1f} s of audio{speed})",
            f"  finals: {self.finals}",
            *(f"  translations ({lang}): {n}" for lang, n in sorted(self.translations.items())),
            *(f"  spoken utterances ({lang}): {n}" for lang, n in sorted(self.spoken.items())),
            *(f"  dropped ({reason}): {n}" for reason, n in sorted(self.dropped.items())),
        ]


async def room_languages(bootstrap: str, room_id: str) -> tuple[str, ...]:
    """Every language anyone listened in, in the room's recorded events."""
    events = [e.record async for e in history.read(bootstrap, ROOM_EVENTS, RoomEvent, key=room_id)]
    return tuple(sorted({e.listen for e in events}))


async def reprocess(
    bootstrap: str, request: ReplayRequest, pipeline: ReplayPipeline, progress: bool = True
) -> ReplaySummary:
    """Run the room's recording through ``pipeline`` and append its outputs to the replay topics."""
    started = time.monotonic()
    summary = ReplaySummary(request.id, run=time.time_ns() // 1_000_000)
    room, since, until = request.room_id, request.since, request.until
    inputs: Sequence[AudioFrame | Transcript]
    if request.stages[0] == "stt":
        frames = [
            e.record async for e in history.read(bootstrap, AUDIO_RAW, AudioFrame, key=room, since=since, until=until)
        ]
        summary.audio_s = sum(len(frame.pcm) for frame in frames) / 2 / SAMPLE_RATE
        inputs = frames
    else:
        finals = [
            e.record
            async for e in history.read(bootstrap, TEXT_ORIGINAL, Transcript, key=room, since=since, until=until)
        ]
        inputs = [final for final in finals if final.is_final]
    summary.inputs = len(inputs)
    headers = {REPLAY_ID_HEADER: request.id.encode(), REPLAY_RUN_HEADER: str(summary.run).encode()}
    outputs = await asyncio.to_thread(_run, pipeline, inputs, summary, progress)
    await history.append(bootstrap, [(REPLAY_TOPICS[type(o)].name, request.id, o, headers) for o in outputs])
    summary.dropped.update(pipeline.dropped)
    summary.wall_s = time.monotonic() - started
    return summary


def _run(
    pipeline: ReplayPipeline, inputs: Sequence[AudioFrame | Transcript], summary: ReplaySummary, progress: bool
) -> list[Envelope]:
    """The blocking part (model inference), in a thread: every output worth keeping, in order."""
    kept: list[Envelope] = []

    def keep(outputs: Iterator[Envelope]) -> None:
        for output in outputs:
            if isinstance(output, Translation):
                summary.translations[output.language] += 1
            elif isinstance(output, Transcript):
                summary.finals += 1
            elif isinstance(output, SynthesizedAudio):
                summary.spoken[output.language] += int(output.is_last)
            else:  # an announced drop: counted, not a result
                summary.dropped[getattr(output, "reason", "other")] += 1
                continue
            kept.append(output)

    with tqdm(total=len(inputs), unit="msg", desc="replay", disable=not progress) as bar:
        for record in inputs:
            keep(pipeline.feed(record))
            bar.update()
        keep(pipeline.close())
    return kept


async def export(
    bootstrap: str,
    room_id: str | None,
    language: str | None,
    since: float | None = None,
    until: float | None = None,
    replay_id: str | None = None,
) -> Subtitles:
    """A live meeting's finals, or a replay's (its latest run), as :class:`~streams.export.Subtitles`."""
    spec = TEXT_ORIGINAL if language is None else TEXT_TRANSLATED
    model = Transcript if language is None else Translation
    if replay_id is None:
        if room_id is None:
            raise ValueError("name a room (--room) or a replay (--replay)")
        finals = [e.record async for e in history.read(bootstrap, spec, model, key=room_id, since=since, until=until)]
    else:
        logged = [e async for e in history.read(bootstrap, REPLAY_TOPICS[model], model, key=replay_id)]
        if not logged:
            raise LookupError(f"no replay {replay_id!r} with {'originals' if language is None else language}")
        last_run = max(_run_of(e) for e in logged)
        finals = [e.record for e in logged if _run_of(e) == last_run]
        room_id = finals[0].room_id
    events = [e.record async for e in history.read(bootstrap, ROOM_EVENTS, RoomEvent, key=room_id, until=until)]
    return subtitles(room_id, language, events, finals, started_at=since, replay_id=replay_id)


def _run_of(logged: history.Logged[SpokenText]) -> int:
    return int(logged.headers.get(REPLAY_RUN_HEADER, b"0"))
