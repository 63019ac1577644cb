from __future__ import annotations

import json

import msgpack
import pytest

from schemas import (
    AudioFrame,
    RoomEvent,
    RoomEventKind,
    SchemaVersionError,
    SynthesizedAudio,
    Transcript,
    Translation,
    decode,
    encode,
)


def frame(**changes: object) -> AudioFrame:
    fields: dict[str, object] = dict(
        room_id="r",
        session_id="s",
        speaker_id="u",
        sequence_number=3,
        captured_at=1.5,
        language="es",
        pcm=b"\x01\x02" * 1600,
    )
    return AudioFrame(**{**fields, **changes}).stamped("gateway", 1.0, 1.1)  # type: ignore[arg-type]


def test_audio_is_binary_and_round_trips() -> None:
    original = frame()
    data = encode(original)
    assert isinstance(msgpack.unpackb(data)["pcm"], bytes)  # raw bytes on the wire, not base64 text
    assert len(data) < len(original.pcm) + 300
    assert decode(AudioFrame, data) == original


def test_text_records_are_json_and_round_trip() -> None:
    transcript = Transcript(
        room_id="r", speaker_id="u", utterance_id="s:0", revision=0, language="es", text="hola",
        is_final=True, audio_start_s=0, audio_end_s=1, speech_started_at=1.0, speech_ended_at=2.0,
    )  # fmt: skip
    translation = Translation(
        **transcript.model_dump(exclude={"language", "text"}), language="en", text="hello",
        source_language="es", target_language="en",
    )  # fmt: skip
    event = RoomEvent(
        room_id="r", kind=RoomEventKind.JOINED, session_id="s", user_id="u", speak="es", listen="en", at=1
    )
    for record in (transcript, translation, event):
        data = encode(record)
        assert json.loads(data)["schema_version"] == 1
        assert decode(type(record), data) == record


def test_synthesized_audio_round_trips() -> None:
    chunk = SynthesizedAudio(
        room_id="r", speaker_id="u", utterance_id="s:0", language="en", chunk_index=0, is_last=False,
        pcm=b"\x00\x01" * 10, speech_ended_at=1.0,
    )  # fmt: skip
    assert decode(SynthesizedAudio, encode(chunk)) == chunk


def test_timings_accumulate_per_stage() -> None:
    stamped = frame().stamped("stt", 2.0, 2.5, compute_s=0.4)
    assert [t.stage for t in stamped.timings] == ["gateway", "stt"]
    assert stamped.timings[-1].compute_s == 0.4


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1, 2]", b'{"room_id": 5}', b"not json"])
def test_malformed_records_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(Transcript, data)
    with pytest.raises(ValueError):
        decode(AudioFrame, data)


def test_a_newer_schema_version_is_refused() -> None:
    raw = msgpack.unpackb(encode(frame()))
    raw["schema_version"] = 99
    with pytest.raises(SchemaVersionError):
        decode(AudioFrame, msgpack.packb(raw))
