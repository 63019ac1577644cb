"""``dragoman bench load``: how many meetings this system holds, measured live.

For each N of ``--rooms``, N rooms run at once, with staggered starts. In each
room one speaker streams recorded utterances in real time, as a client does
(100 ms frames, sent when their last sample would have been captured, a
pause after each utterance); one listener in another language listens on an
audio socket, and a captions socket watches. Everything goes through the
gateway, as PROTOCOL.md says: nothing here reads Kafka.

Per utterance, end of speech is known exactly (the recording is trimmed of
silence, and the bench knows when it sent its last sample). Measured:

- final caption: end of speech → the original-language final arrives;
- final translated caption: end of speech → the listener's language's final arrives;
- first translated audio: end of speech → the listener's ``audio_start``;
- partials per final: partial captions received per delivered final (fewer when the speech stage,
  behind, skips them so that finals come first);
- announced: utterances whose original was announced as dropped (``dropped``);
- refused: utterances of speakers refused with ``overloaded`` at admission;
- told unavailable / told rate limited: utterances whose speaker was told that what it sent was
  dropped, as PROTOCOL.md says: ``rate_limited`` while saying them (a client held up sends what it
  owes at once, past the burst allowance), or ``unavailable`` (the broker took no records) during
  them or before them in an outage the client has not yet seen end (see :meth:`Room.told_dropped`);
- missing, for the original final, its translation and its translated speech (through
  ``audio_end``): neither delivered nor announced (nor told dropped). Silent loss, which must be zero;
- STT CPU: the speech worker's CPU seconds per second (its ``/metrics``).

Capacity is the largest N whose final-caption p90 stays within 1.5× that of
N=1 with nothing missing.

With a replay command, every N is run a second time while that command (a
``dragoman replay reprocess`` of the first round's first room) runs over and
over beside it: what a live meeting pays while an operator reprocesses
another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from schemas import SAMPLE_RATE
from streams.cli.measures import PROCESS_CPU, cpu_use, percentile
from streams.cli.realtime import AudioSocket, SentAudio, play
from web.ingest import STALL_S
from web.outage import CHECK_EVERY_S

PAUSE_S = 1.5
"""Silence after each utterance: three hangovers, so every utterance closes on its own."""
DRAIN_S = 8.0
"""How long the bench waits after the last utterance for late results."""
CAPACITY_FACTOR = 1.5
AUDIO_DROPPED = ("unavailable", "rate_limited")
"""The errors that tell a speaker that audio it sent was dropped (PROTOCOL.md)."""
TOLD_LATE_S = STALL_S + CHECK_EVERY_S
"""The latest the gateway tells ``unavailable`` after a record it lost was sent: one not delivered for
``STALL_S`` is an outage, which :mod:`web.outage` looks for every ``CHECK_EVERY_S``."""


@dataclass
class Utterance:
    started_at: float = 0.0
    """Wall-clock time of its first sample of speech (as sent; 0 until then)."""
    ended_at: float = 0.0
    """Wall-clock time of its last sample of speech (as sent; 0 until then)."""
    final_at: float | None = None
    translated_at: float | None = None
    first_audio_at: float | None = None
    audio_ended_at: float | None = None
    announced: set[str] = field(default_factory=set)
    """Languages in which it was announced as dropped."""


@dataclass
class Room:
    name: str
    utterances: list[Utterance]
    speak: str
    listen: str
    refused: bool = False
    told: dict[str, list[float]] = field(default_factory=lambda: {code: [] for code in AUDIO_DROPPED})
    """Per error code of :data:`AUDIO_DROPPED`: when the speaker was told it."""
    ids: dict[str, int] = field(default_factory=dict)
    """utterance id (from the pipeline) → index of the utterance it belongs to."""
    partials: Counter[str] = field(default_factory=Counter)
    """utterance id → partial captions of it received (skipped first when speech recognition is behind)."""

    heard: list[tuple[float, float]] = field(default_factory=list)
    """(when it arrived, end of speech) of every caption received: when the room's speech was served."""

    def told_dropped(self, utterance: Utterance, codes: Iterable[str] = AUDIO_DROPPED) -> bool:
        """Its speaker was told that what it sent of it was dropped.

        ``rate_limited`` refuses frames as they come: it is told while the speaker says them.
        ``unavailable`` is told once per outage (PROTOCOL.md), up to :data:`TOLD_LATE_S` after what
        it lost was sent, and what the client sends "meanwhile" is dropped: a client knows the outage
        is over when speech it sent after being told is served again (a caption of it arrives), so an
        utterance begun before then is in the outage, however long it lasts.
        """
        rate_limited = "rate_limited" in codes and any(
            utterance.started_at - 1.0 <= at <= utterance.ended_at + 3.0 for at in self.told["rate_limited"]
        )
        unavailable = "unavailable" in codes and any(
            at <= utterance.ended_at + TOLD_LATE_S and self.served_again(at) > utterance.started_at
            for at in self.told["unavailable"]
        )
        return rate_limited or unavailable

    def served_again(self, told_at: float) -> float:
        """When the first caption of speech that ended after ``told_at`` arrived (infinity: none has)."""
        return min((arrived for arrived, ended in self.heard if ended > told_at), default=math.inf)

    def index_of(self, timestamp_ms: int) -> int | None:
        """The utterance whose speech ended closest before a caption's ``timestamp_ms`` (end of speech)."""
        at = timestamp_ms / 1000
        candidates = [i for i, u in enumerate(self.utterances) if u.ended_at and u.ended_at - 1.5 <= at]
        return min(candidates, key=lambda i: abs(self.utterances[i].ended_at - at), default=None)


async def _speak(ws: AudioSocket, room: Room, speech: Sequence[bytes], delay_s: float) -> None:
    """``speech`` in real time after ``delay_s``, a pause after each utterance; each utterance timed as
    its frames went out (:mod:`streams.cli.realtime`), as they go."""
    await asyncio.sleep(delay_s)
    pause = b"\0" * int(PAUSE_S * SAMPLE_RATE * 2)
    bounds, offset = [], 0
    for pcm in speech:
        bounds.append((offset, offset + len(pcm)))
        offset += len(pcm) + len(pause)

    def timed(sent: SentAudio) -> None:
        for utterance, (start, end) in zip(room.utterances, bounds, strict=True):
            if not utterance.started_at and sent.has(start):
                utterance.started_at = sent.started_at(start)
            if not utterance.ended_at and sent.has(end - 1):
                utterance.ended_at = sent.ended_at(end)

    await play(ws, pause.join(speech) + pause, timed)


async def _listen(ws: aiohttp.ClientWebSocketResponse, room: Room, kind: str) -> None:
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        event, now = json.loads(message.data), time.time()
        if kind == "speaker" and event.get("type") == "error" and event.get("code") == "overloaded":
            room.refused = True
        elif kind == "speaker" and event.get("type") == "error" and event.get("code") in AUDIO_DROPPED:
            room.told[event["code"]].append(now)
        elif event.get("event") in ("caption", "dropped"):
            _on_caption(room, event, now)
        elif event.get("type") in ("audio_start", "audio_end") and event["utterance_id"] in room.ids:
            utterance = room.utterances[room.ids[event["utterance_id"]]]
            if event["type"] == "audio_start":
                utterance.first_audio_at = now
            else:
                utterance.audio_ended_at = now


def _on_caption(room: Room, event: dict[str, Any], now: float) -> None:
    """A caption or a drop announcement, matched to its utterance by end of speech."""
    if event["event"] == "caption":
        room.heard.append((now, event["timestamp_ms"] / 1000))
    index = room.index_of(event["timestamp_ms"])
    if index is None:
        return
    utterance = room.utterances[index]
    if event["event"] == "dropped":
        utterance.announced.add(event["language"])
    elif not event["is_final"] and event["language"] == room.speak:
        room.partials[event["utterance_id"]] += 1
    elif event["is_final"] and event["language"] == room.speak:
        room.ids[event["utterance_id"]] = index
        utterance.final_at = now
    elif event["is_final"] and event["language"] == room.listen:
        utterance.translated_at = now


async def run_rooms(
    url: str, secret: str, rooms: int, speech: Sequence[bytes], speak: str, listen: str, drain_s: float = DRAIN_S,
    names: Sequence[str] = (),
) -> list[Room]:  # fmt: skip
    """``rooms`` meetings at once through the gateway at ``url``, each speaker streaming ``speech`` (trimmed
    recordings) in real time; returns what each room's clients received of each utterance by ``drain_s``
    after the last one. ``names``: the rooms' ids (default: made up)."""
    from web.auth import mint

    ws_url = url.replace("http", "ws", 1)
    cycle_s = sum(len(p) / 2 / SAMPLE_RATE + PAUSE_S for p in speech) / len(speech)
    names = list(names) or [f"load-{uuid.uuid4().hex[:8]}" for _ in range(rooms)]
    state = [Room(name, [Utterance() for _ in speech], speak, listen) for name in names[:rooms]]
    async with aiohttp.ClientSession() as http:
        sockets = []
        for room in state:

            def connect(endpoint: str, user: str, query: str, room: Room = room) -> object:
                token = mint(secret, room.name, f"{user}-{room.name}")
                return http.ws_connect(f"{ws_url}/ws/{endpoint}/{room.name}?token={token}{query}")

            speaker = await connect("audio", "speaker", f"&speak={speak}&listen={speak}")  # type: ignore[misc]
            listener = await connect("audio", "listener", f"&speak={listen}&listen={listen}")  # type: ignore[misc]
            captions = await connect("captions", "viewer", "")  # type: ignore[misc]
            sockets.append((room, speaker, listener, captions))
        for _, speaker, listener, _ in sockets:
            await speaker.receive()  # `session`
            await listener.receive()
        await asyncio.sleep(2.0)  # the translate stage's room table sees the listeners
        listeners = [
            asyncio.create_task(_listen(ws, room, kind))
            for room, *opened in sockets
            for ws, kind in zip(opened, ("speaker", "listener", "captions"), strict=True)
        ]
        speakers = [_speak(s, room, speech, i * cycle_s / rooms) for i, (room, s, _, _) in enumerate(sockets)]
        await asyncio.gather(*speakers)
        await asyncio.sleep(drain_s)
        for task in listeners:
            task.cancel()
        for _, *opened in sockets:
            for ws in opened:
                await ws.close()
    return state


def summarize(rooms: list[Room], cpu_cores: float | None) -> dict[str, object]:
    admitted = [r for r in rooms if not r.refused]
    finals = [u.final_at - u.ended_at for r in admitted for u in r.utterances if u.final_at]
    audio = [u.first_audio_at - u.ended_at for r in admitted for u in r.utterances if u.first_audio_at]
    translated = [u.translated_at - u.ended_at for r in admitted for u in r.utterances if u.translated_at]
    partials = [r.partials[utterance_id] for r in admitted for utterance_id in r.ids]

    def missing(delivered: Callable[[Utterance], float | None], announced_in: Callable[[Room], set[str]]) -> int:
        return sum(1 for r in admitted for u in r.utterances if delivered(u) is None
                   and not u.announced & announced_in(r) and not r.told_dropped(u))  # fmt: skip

    return {
        "rooms": len(rooms),
        "utterances": sum(len(r.utterances) for r in rooms),
        "final_p50_s": round(percentile(finals, 0.5), 3),
        "final_p90_s": round(percentile(finals, 0.9), 3),
        "final_max_s": round(max(finals, default=float("nan")), 3),
        "translated_p50_s": round(percentile(translated, 0.5), 3),
        "translated_p90_s": round(percentile(translated, 0.9), 3),
        "first_audio_p50_s": round(percentile(audio, 0.5), 3),
        "first_audio_p90_s": round(percentile(audio, 0.9), 3),
        "partials_per_final": round(float(np.mean(partials)), 1) if partials else float("nan"),
        "finals_missing": missing(lambda u: u.final_at, lambda r: {r.speak}),
        "translations_missing": missing(lambda u: u.translated_at, lambda r: {r.speak, r.listen}),
        "audio_missing": missing(lambda u: u.audio_ended_at, lambda r: {r.speak, r.listen}),
        "announced": sum(1 for r in admitted for u in r.utterances if r.speak in u.announced and u.final_at is None),
        "refused": sum(len(r.utterances) for r in rooms if r.refused),
        **{f"told_{c}": sum(r.told_dropped(u, [c]) for r in admitted for u in r.utterances) for c in AUDIO_DROPPED},
        "stt_cpu_cores": None if cpu_cores is None else round(cpu_cores, 2),
    }


@contextlib.contextmanager
def repeating(command: Sequence[str], env: Mapping[str, str]) -> Iterator[list[int]]:
    """``command`` run again and again in the background until the block ends; yields its exit codes."""
    codes: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            codes.append(done.returncode)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield codes
    finally:
        stop.set()
        thread.join()


def bench_load(
    url: str,
    secret: str,
    stt_metrics_url: str,
    room_counts: Sequence[int],
    speech: Sequence[bytes],
    speak: str,
    listen: str,
    replay: tuple[Sequence[str], Mapping[str, str]] | None = None,
) -> dict[str, object]:
    """Run every N of ``room_counts`` in turn against the system at ``url``; prints a table and a JSON line.

    ``replay``: a command (to which ``--room ROOM`` is added) and its environment, to run every N
    again beside it.
    """
    rows: list[dict[str, object]] = []
    columns = ["rooms", "final_p50_s", "final_p90_s", "final_max_s", "translated_p50_s", "translated_p90_s",
               "first_audio_p50_s", "first_audio_p90_s", "partials_per_final",
               "finals_missing", "translations_missing", "audio_missing", "announced", "refused",
               "stt_cpu_cores"]  # fmt: skip
    print(" | ".join(columns), flush=True)
    recorded: list[str] = []

    def round_of(count: int, label: object) -> None:
        with cpu_use([(stt_metrics_url, PROCESS_CPU)]) as used:
            rooms = asyncio.run(run_rooms(url, secret, count, speech, speak, listen))
        recorded.extend(room.name for room in rooms)
        row = {**summarize(rooms, used.processes[0]), "rooms": label}
        rows.append(row)
        print(" | ".join(str(row[c]) for c in columns), flush=True)
        time.sleep(6.0)  # speakers of this round leave the stage's active count before the next

    for count in room_counts:
        round_of(count, count)
    if replay is not None:
        command, env = replay
        with repeating([*command, "--room", recorded[0]], env) as codes:
            for count in room_counts:
                round_of(count, f"{count} + replay")
        print(f"replays beside them: {len(codes)} runs, {sum(c != 0 for c in codes)} failed", flush=True)
    baseline = rows[0]["final_p90_s"] if rows and rows[0]["rooms"] == 1 else None
    capacity = None
    if isinstance(baseline, float):
        fits = [r["rooms"] for r in rows if isinstance(r["rooms"], int) and r["finals_missing"] == 0
                and r["refused"] == 0 and isinstance(r["final_p90_s"], float)
                and r["final_p90_s"] <= CAPACITY_FACTOR * baseline]  # fmt: skip
        capacity = max(fits, default=None)
    print(f"capacity: {capacity} rooms (final caption p90 within {CAPACITY_FACTOR}x of one room, nothing missing)")
    summary = {"bench": "load", "speak": speak, "listen": listen, "utterances_per_room": len(speech),
               "rows": rows, "capacity_rooms": capacity}  # fmt: skip
    print(json.dumps(summary))
    return summary
