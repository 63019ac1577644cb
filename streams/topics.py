"""The topics of a meeting: names, record types, partitioning and retention.

Every meeting topic is keyed by ``room_id`` (file transcription topics by the
file's sha256) and has the same partition count,
so one room's events stay in order on one partition, and the room's state in
a table lives beside the room's audio and text (Faust co-partitions them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from schemas import (
    AudioFrame,
    DeadLetter,
    RoomEvent,
    Signal,
    StageLoad,
    SynthesizedAudio,
    Transcript,
    TranscriptionRequest,
    TranscriptionUpdate,
    Translation,
    UtteranceDropped,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    record: type[BaseModel]
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    @property
    def codec(self) -> str:
        """The Faust codec name registered for this topic's record (see streams.codecs)."""
        return f"dragoman.{self.record.__name__}"

    def kafka_config(self) -> dict[str, str]:
        base = {"cleanup.policy": "compact"} if self.compacted else {"retention.ms": str(24 * 3600 * 1000)}
        return {**base, **self.config}


ROOM_EVENTS = TopicSpec("room.events", RoomEvent)
AUDIO_RAW = TopicSpec("audio.raw", AudioFrame)
TEXT_ORIGINAL = TopicSpec("text.original", Transcript)
TEXT_TRANSLATED = TopicSpec("text.translated", Translation)
AUDIO_SYNTHESIZED = TopicSpec("audio.synthesized", SynthesizedAudio)
TRANSCRIPTION_REQUESTS = TopicSpec("transcription.requests", TranscriptionRequest)
TRANSCRIPTS = TopicSpec("transcripts", TranscriptionUpdate, compacted=True)
SIGNALING = TopicSpec("signaling", Signal, config={"retention.ms": str(3600 * 1000)})
UTTERANCES_DROPPED = TopicSpec("utterances.dropped", UtteranceDropped)
PIPELINE_LOAD = TopicSpec("pipeline.load", StageLoad, config={"retention.ms": str(3600 * 1000)})
DLQ = TopicSpec("pipeline.dlq", DeadLetter, config={"retention.ms": str(7 * 24 * 3600 * 1000)})

MEETING_TOPICS: tuple[TopicSpec, ...] = (
    ROOM_EVENTS,
    AUDIO_RAW,
    TEXT_ORIGINAL,
    TEXT_TRANSLATED,
    AUDIO_SYNTHESIZED,
    SIGNALING,
    UTTERANCES_DROPPED,
    PIPELINE_LOAD,
    TRANSCRIPTION_REQUESTS,
    TRANSCRIPTS,
    DLQ,
)

EGRESS_TOPICS: tuple[TopicSpec, ...] = (
    TEXT_ORIGINAL,
    TEXT_TRANSLATED,
    AUDIO_SYNTHESIZED,
    SIGNALING,
    UTTERANCES_DROPPED,
    PIPELINE_LOAD,
)
"""What the gateway's egress consumer reads from the tail and fans out to local sockets."""
EGRESS_STATE_TOPICS: tuple[TopicSpec, ...] = (ROOM_EVENTS, TRANSCRIPTS)
"""What it reads from the beginning: every gateway knows every room's participants and every transcript."""

STAGE_SOURCES: dict[str, TopicSpec] = {
    "stt": AUDIO_RAW,
    "translate": TEXT_ORIGINAL,
    "tts": TEXT_TRANSLATED,
    "transcribe": TRANSCRIPTION_REQUESTS,
}
"""Every pipeline stage (a Faust app and consumer group of its own) and the topic it consumes."""

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in MEETING_TOPICS}
BY_RECORD: dict[type[BaseModel], TopicSpec] = {spec.record: spec for spec in MEETING_TOPICS}
