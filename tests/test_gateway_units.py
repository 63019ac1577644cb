"""Gateway pieces without sockets: token checks, frame grouping, routing, the bounded outbox, room state,
the outage notice, presence."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import cast

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    RoomEvent,
    RoomEventKind,
    Signal,
    SignalKind,
    StageLoad,
    SynthesizedAudio,
    Transcript,
    Translation,
    UtteranceDropped,
)
from streams.rooms import RoomState, apply_event, from_table, listening_languages, present, to_table
from tests.test_meeting import wait_until
from web import auth
from web.admission import Admission, PipelineLoad
from web.ingest import BadFrame, BrokerUnavailable, FrameGrouper, Ingest, check_frame
from web.outage import OutageNotice
from web.presence import Presence
from web.routing import Connection, Outbox, Router

K = "test-secret-of-at-least-32-bytes!"
LEASE_S = 12.0


def test_tokens_verify_for_their_room_or_any() -> None:
    assert auth.verify(K, auth.mint(K, "r1", "u1", name="Ann"), "r1") == auth.Claims("u1", "r1", "Ann")
    assert auth.verify(K, auth.mint(K, "*", "u1"), "r9").user_id == "u1"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not.a.jwt",
        auth.mint("another-secret-of-at-least-32-bytes", "r1", "u1"),
        auth.mint(K, "r2", "u1"),
        auth.mint(K, "r1", "u1", ttl_s=-10),
        jwt.encode({"sub": "u1", "room": "r1"}, K, algorithm="HS256"),  # no exp
    ],
)
def test_bad_tokens_are_refused(token: str | None) -> None:
    with pytest.raises(auth.Unauthorized):
        auth.verify(K, token, "r1")


def test_frames_are_grouped_to_about_100_ms_and_numbered() -> None:
    grouper = FrameGrouper("r", "s", "u", group_ms=100, clock=lambda: 50.0)
    out = []
    for _ in range(10):
        out += grouper.push(b"\x00\x00" * 320, "es")  # 20 ms frames
    assert [f.sequence_number for f in out] == [0, 1]
    assert all(len(f.pcm) == 3200 and f.language == "es" for f in out)
    assert out[0].captured_at == pytest.approx(50.0 - 0.02)
    assert out[0].timings[0].stage == "gateway"
    tail = grouper.push(b"\x00\x00" * 100, "es") + grouper.flush("es", end_of_utterance=True)
    assert [(f.sequence_number, len(f.pcm), f.end_of_utterance) for f in tail] == [(2, 200, False), (3, 0, True)]


@given(size=st.one_of(st.sampled_from([0, 1, 3, 31_998, 31_999, 32_000, 32_001, 32_002]), st.integers(0, 70_000)))
def test_a_frame_is_audio_exactly_when_it_is_whole_samples_up_to_one_second(size: int) -> None:
    """PROTOCOL.md: PCM frames of 2 to 32,000 bytes (1 s, itself allowed) in whole 16-bit samples."""
    is_audio = 0 < size <= 32_000 and size % 2 == 0
    try:
        check_frame(b"\x00" * size)
    except BadFrame:
        assert not is_audio, size
    else:
        assert is_audio, size


def _transcript(language: str = "es", **extra: object) -> Transcript:
    fields = dict(
        room_id="r", speaker_id="carlos", utterance_id="s:0", revision=0, language=language, text="hola",
        is_final=True, audio_start_s=0.0, audio_end_s=1.0,
        speech_started_at=time.time() - 1, speech_ended_at=time.time(),
    )  # fmt: skip
    if extra:
        return Translation(**{**fields, **extra})  # type: ignore[arg-type]
    return Transcript(**fields)  # type: ignore[arg-type]


def _chunk(index: int, is_last: bool, pcm: bytes = b"\x01\x00" * 4) -> SynthesizedAudio:
    return SynthesizedAudio(
        room_id="r", speaker_id="carlos", utterance_id="s:0", language="en", chunk_index=index, is_last=is_last,
        pcm=pcm, speech_ended_at=1.0,
    )  # fmt: skip


def test_signaling_relays_by_user_and_mutes_originals_during_translated_speech() -> None:
    router = Router(LEASE_S)
    ana = Connection("signaling", "r", "a3", "ana", None)
    carlos = Connection("signaling", "r", "c3", "carlos", None)
    router.route(_event(RoomEventKind.JOINED, "a1", "ana", speak="en", listen="en"))
    router.route(_event(RoomEventKind.JOINED, "c1", "carlos", speak="es", listen="es"))
    assert json.loads(router.add(ana)[0])["participants"] == [
        {"user_id": "ana", "name": "", "speak": "en", "listen": "en"},
        {"user_id": "carlos", "name": "", "speak": "es", "listen": "es"},
    ]
    router.add(carlos)
    offer = Signal(room_id="r", kind=SignalKind.OFFER, from_user="carlos", to_user="ana", payload={"sdp": "v=0"})
    assert [(c, [json.loads(m) for m in ms]) for c, ms in router.route(offer)] == [
        (ana, [{"type": "offer", "from": "carlos", "payload": {"sdp": "v=0"}}])
    ]
    started = dict(router.route(_chunk(0, is_last=False)))
    assert [json.loads(m)["type"] for m in started[ana]] == ["suppress_original"] and carlos not in started
    ended = dict(router.route(_chunk(1, is_last=True, pcm=b"")))
    assert json.loads(ended[ana][0]) == {"type": "restore_original", "speaker_id": "carlos"}
    update = dict(router.route(_event(RoomEventKind.LEFT, "c1", "carlos", speak="es", listen="es")))
    assert [p["user_id"] for p in json.loads(update[ana][0])["participants"]] == ["ana"]


def test_captions_backlog_holds_the_recent_finals_of_the_room() -> None:
    router = Router(LEASE_S)
    for i in range(60):
        router.route(_transcript("es").model_copy(update={"utterance_id": f"s:{i}"}))
    router.route(_transcript("es").model_copy(update={"is_final": False}))
    backlog = [json.loads(m) for m in router.add(Connection("captions", "r", "v1", "viewer", None))]
    assert len(backlog) == 50 and all(c["backlog"] and c["is_final"] for c in backlog)
    assert backlog[-1]["utterance_id"] == "s:59"
    assert router.add(Connection("captions", "r", "v2", "viewer", "de")) == []


def _event(kind: RoomEventKind, session: str, user: str, speak: str | None, listen: str) -> RoomEvent:
    return RoomEvent(room_id="r", kind=kind, session_id=session, user_id=user, speak=speak, listen=listen, at=0)


def test_routing_by_room_language_and_never_to_the_speaker() -> None:
    router = Router(LEASE_S)
    ana_audio = Connection("audio", "r", "a1", "ana", "en")
    carlos_audio = Connection("audio", "r", "c1", "carlos", "en")  # listens in English, but is the speaker
    ana_captions_en = Connection("captions", "r", "a2", "ana", "en")
    all_captions = Connection("captions", "r", "b1", "bo", None)
    elsewhere = Connection("captions", "other-room", "x1", "xi", None)
    for connection in (ana_audio, carlos_audio, ana_captions_en, all_captions, elsewhere):
        router.add(connection)

    original = dict(router.route(_transcript("es")))
    assert set(original) == {all_captions}
    assert json.loads(original[all_captions][0])["source_language"] == "es"

    english = dict(router.route(_transcript("en", source_language="es", target_language="en")))
    assert set(english) == {all_captions, ana_captions_en}

    first = dict(router.route(_chunk(0, is_last=False)))
    assert set(first) == {ana_audio}
    start, pcm = first[ana_audio]
    assert json.loads(start)["type"] == "audio_start" and isinstance(pcm, bytes)
    last = dict(router.route(_chunk(1, is_last=True, pcm=b"")))
    assert [json.loads(m)["type"] for m in last[ana_audio]] == ["audio_end"]

    router.remove(ana_audio)
    assert router.route(_chunk(0, is_last=False).model_copy(update={"utterance_id": "s:1"})) == []


def test_work_a_stage_redid_after_a_crash_reaches_no_socket_twice() -> None:
    router = Router(LEASE_S)
    viewer, listener = Connection("captions", "r", "v1", "bo", None), Connection("audio", "r", "a1", "ana", "en")
    router.add(viewer)
    router.add(listener)

    def texts(record: Transcript | SynthesizedAudio | UtteranceDropped) -> list[str | bytes]:
        return [m for _, messages in router.route(record) for m in messages]

    partial = _transcript("es").model_copy(update={"is_final": False})
    assert len(texts(partial.model_copy(update={"revision": 1}))) == 1
    assert texts(partial.model_copy(update={"revision": 1})) == texts(partial) == []  # redone from the start
    final = _transcript("es").model_copy(update={"revision": 2})
    assert len(texts(final)) == 1
    assert texts(final) == texts(partial.model_copy(update={"revision": 5})) == []
    assert texts(UtteranceDropped.of(final, "stt", "stale")) == []  # a replay found it stale: it was delivered

    assert [json.loads(m)["type"] for m in texts(_chunk(0, is_last=False)) if isinstance(m, str)] == ["audio_start"]
    assert texts(_chunk(0, is_last=False)) == []  # a TTS retry: no second audio_start
    assert [json.loads(m)["type"] for m in texts(_chunk(1, is_last=True, pcm=b""))] == ["audio_end"]
    assert len(texts(final.model_copy(update={"utterance_id": "s:1"}))) == 1  # another utterance is news


def test_records_re_read_at_start_are_remembered_not_sent() -> None:
    router = Router(LEASE_S)
    viewer = Connection("captions", "r", "v1", "bo", None)
    router.add(viewer)
    assert router.route(_transcript("es"), live=False) == []
    assert router.route(_transcript("es")) == []  # and it is not news later either
    assert [json.loads(m)["backlog"] for m in router.add(Connection("captions", "r", "v2", "cy", None))] == [True]


def test_a_room_s_state_is_freed_when_its_last_participant_leaves() -> None:
    router = Router(LEASE_S)
    router.route(_event(RoomEventKind.JOINED, "c1", "carlos", speak="es", listen="es"))
    router.route(_transcript("es"))
    router.route(_event(RoomEventKind.LEFT, "c1", "carlos", speak="es", listen="es"))
    assert router.rooms == {} and router.add(Connection("captions", "r", "v1", "bo", None)) == []


async def test_a_full_outbox_drops_the_oldest_audio_and_says_so() -> None:
    outbox = Outbox(capacity=3)
    outbox.put('{"event": "caption"}')
    outbox.put(b"audio-1")
    outbox.put(b"audio-2")
    outbox.put(b"audio-3")
    got = [await outbox.get() for _ in range(4)]
    assert got[0] == '{"event": "caption"}'
    assert b"audio-1" not in got and b"audio-3" in got
    assert any(isinstance(m, str) and json.loads(m).get("code") == "overloaded" for m in got)
    assert outbox.dropped == 1


class BrokerThatComesBack:
    """An ingest as the outage notice sees it: down on demand, and losing records on demand while it
    looks available, as when one fails and the next gets through before anyone looked."""

    def __init__(self) -> None:
        self.lost = 0
        self.down = False
        self.looks = 0

    def available(self, now: float) -> bool:
        self.looks += 1
        return not self.down


async def _looked(ingest: BrokerThatComesBack, times: int) -> None:
    """Until the notice has looked at ``ingest`` ``times`` more times (each look is one turn of its loop)."""
    until = ingest.looks + times
    await wait_until(lambda: ingest.looks >= until, timeout=30)


async def _errors(outbox: Outbox) -> list[str]:
    """The error codes queued on ``outbox``, taken off it (what is queued comes at once)."""
    codes = []
    with contextlib.suppress(TimeoutError):
        while True:
            codes.append(json.loads(await asyncio.wait_for(outbox.get(), 0.05))["code"])
    return codes


async def test_records_lost_are_told_even_when_the_broker_was_back_before_anyone_looked() -> None:
    router, ingest = Router(LEASE_S), BrokerThatComesBack()
    listener = Connection("audio", "r", "s1", "ana", "en")
    router.add(listener)
    notice = OutageNotice(router, cast(Ingest, ingest))
    await notice.start()
    try:
        await _looked(ingest, 1)
        ingest.lost += 1  # a record failed; the next one was delivered
        await _looked(ingest, 2)
        assert await _errors(listener.outbox) == ["unavailable"]
        ingest.down = True  # a real outage: told once, however long it lasts or loses
        ingest.lost += 5
        await _looked(ingest, 3)
        ingest.lost += 5
        await _looked(ingest, 2)
        assert await _errors(listener.outbox) == ["unavailable"]
        ingest.down = False
        await _looked(ingest, 2)
        assert await _errors(listener.outbox) == []  # back, and nothing lost since
    finally:
        await notice.stop()


def test_room_state_is_a_fold_over_events() -> None:
    def event(kind: RoomEventKind, session: str, listen: str, speak: str | None = "en") -> RoomEvent:
        return RoomEvent(room_id="r", kind=kind, session_id=session, user_id=session, speak=speak, listen=listen, at=0)

    state: RoomState = {}
    state = apply_event(state, event(RoomEventKind.JOINED, "a", "en"), LEASE_S)
    state = apply_event(state, event(RoomEventKind.JOINED, "b", "es"), LEASE_S)
    state = apply_event(state, event(RoomEventKind.LANGUAGES_CHANGED, "b", "de"), LEASE_S)
    assert listening_languages(state) == {"en", "de"}
    stored = json.loads(json.dumps(to_table(state)))  # the rooms table keeps JSON
    assert from_table(stored) == state and stored["b"]["listen"] == "de"
    state = apply_event(state, event(RoomEventKind.LEFT, "a", "en"), LEASE_S)
    assert listening_languages(state) == {"de"}


def _stt_report(worker: str, at: float, *speakers: str, backlog_s: float = 0.0) -> StageLoad:
    return StageLoad(stage="stt", worker_id=worker, at=at, ready=True, partitions=(0, 1), backlog_s=backlog_s,
                     busy=0.5, active_streams=speakers)  # fmt: skip


def test_admission_counts_every_stt_worker_and_the_speakers_admitted_since_their_reports() -> None:
    load = PipelineLoad({"stt": 4})
    admission = Admission(load, max_speakers=4, max_backlog_s=1.0)
    load.update(_stt_report("a", 100.0, "s1"))
    load.update(_stt_report("b", 100.0, "s2"))
    assert admission.admit("s3", 100.2) and admission.admit("s4", 100.3)  # 2 streaming + 2 just admitted: full
    assert not admission.admit("s5", 100.4)
    load.update(_stt_report("a", 101.0, "s1", "s3"))  # the reports now show the newcomers: counted once
    load.update(_stt_report("b", 101.0, "s2", "s4"))
    assert not admission.admit("s5", 101.1)
    load.update(_stt_report("b", 101.5, "s2"))  # s4 left; it was admitted 1.2 s ago, but is in no report
    assert admission.admit("s5", 101.5)
    load.update(_stt_report("a", 103.0, backlog_s=2.0))  # running behind: nobody new
    assert not admission.admit("s6", 103.1)


def test_readiness_needs_every_partition_of_every_stage_owned_by_a_fresh_ready_worker() -> None:
    load = PipelineLoad({"stt": 2, "tts": 2})
    load.update(_stt_report("a", 100.0))
    assert load.readiness(100.5) == {"stt": True, "tts": False}
    assert load.readiness(104.0) == {"stt": False, "tts": False}  # a report that old is a worker gone


def test_presence_is_a_lease_its_gateway_renews() -> None:
    def event(kind: RoomEventKind, session: str, gateway: str, at: float) -> RoomEvent:
        return RoomEvent(room_id="r", kind=kind, session_id=session, user_id=session, listen="en", at=at,
                         gateway_id=gateway)  # fmt: skip

    state = apply_event({}, event(RoomEventKind.JOINED, "a", "g1", 0.0), LEASE_S)
    state = apply_event(state, event(RoomEventKind.JOINED, "b", "g2", 1.0), LEASE_S)
    state = apply_event(state, event(RoomEventKind.RENEWED, "", "g1", 10.0), LEASE_S)
    assert set(present(state, 12.5, LEASE_S)) == {"a", "b"}
    assert set(present(state, 13.5, LEASE_S)) == {"a"}  # g2 stopped renewing at 1.0
    state = apply_event(state, event(RoomEventKind.RENEWED, "", "g1", 20.0), LEASE_S)
    assert set(state) == {"a"}  # the table forgets b at the next event


class RecordingIngest:
    """An ingest as presence sees it: keeps what is delivered, refuses on demand, and loses records
    (a participant's join, say) on demand."""

    def __init__(self) -> None:
        self.lost = 0
        self.refusing = False
        self.refused = 0
        self.delivered: list[RoomEventKind] = []

    async def deliver(self, *records: RoomEvent) -> None:
        if self.refusing:
            self.refused += 1
            raise BrokerUnavailable("the broker is away")
        self.delivered += [record.kind for record in records]


async def test_presence_says_every_join_again_once_a_record_was_lost_or_a_renewal_failed() -> None:
    router, ingest = Router(LEASE_S), RecordingIngest()
    presence = Presence(router, cast(Ingest, ingest), "g1", lease_s=1.5)  # renewed every 0.5 s
    ana = Connection("audio", "r", "s1", "ana", "en")
    router.add(ana)
    presence.said(RoomEvent(room_id="r", kind=RoomEventKind.JOINED, session_id="s1", user_id="ana", listen="en",
                            at=time.time(), gateway_id="g1"))  # fmt: skip

    async def next_delivered() -> RoomEventKind:
        index = len(ingest.delivered)
        await wait_until(lambda: len(ingest.delivered) > index, timeout=30)
        return ingest.delivered[index]

    await presence.start()
    try:
        assert await next_delivered() == RoomEventKind.RENEWED
        ingest.lost += 1  # a record was sent and never delivered: ana's join, perhaps
        assert await next_delivered() == RoomEventKind.JOINED
        assert await next_delivered() == RoomEventKind.RENEWED  # nothing lost since
        ingest.refusing = True
        await wait_until(lambda: ingest.refused >= 2, timeout=30)
        ingest.refusing = False
        assert await next_delivered() == RoomEventKind.JOINED  # the first renewal that got through again
    finally:
        await presence.stop()


def test_participants_whose_gateway_stopped_renewing_leave_and_the_room_is_told() -> None:
    router = Router(LEASE_S)
    watcher = Connection("signaling", "r", "w1", "ana", None)
    router.add(watcher)
    now = time.time()
    for session, gateway in (("a1", "here"), ("b1", "dead"), ("c1", "dead")):
        router.route(RoomEvent(room_id="r", kind=RoomEventKind.JOINED, session_id=session, user_id=session,
                               speak="en", listen="en", at=now, gateway_id=gateway))  # fmt: skip
    renewal = RoomEvent(room_id="r", kind=RoomEventKind.RENEWED, session_id="", user_id="", listen="", at=now + 8,
                        gateway_id="here")  # fmt: skip
    assert router.route(renewal) == []  # a renewal changes no one's presence: nothing to tell
    assert router.expire(now + LEASE_S) == []
    [(connection, [update])] = router.expire(now + LEASE_S + 1)
    assert connection is watcher and [p["user_id"] for p in json.loads(update)["participants"]] == ["a1"]
