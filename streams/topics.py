"""The topics of a meeting: names, record types, partitioning and retention.

Every meeting topic is keyed by ``room_id`` (file transcription topics by the
file's sha256) and has the same partition count,
so one room's events stay in order on one partition, and the room's state in
a table lives beside the room's audio and text (Faust co-partitions them).
"""

from __future__ import annotations

from dataclasses import dataclass

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

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
AUDIO_RETENTION_MS = DAY_MS
"""Audio is big and personal: a day, enough to reprocess yesterday's meeting from its speech."""
TEXT_RETENTION_MS = 30 * DAY_MS
"""Text is small: a month of transcripts, translations and room events to export and re-translate."""
COMPACTED_SEGMENT_MS = HOUR_MS
"""A compacted topic's superseded records are removed within about an hour."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    record: type[BaseModel]
    retention_ms: int = TEXT_RETENTION_MS
    compacted: bool = False
    """Keep only the last record per key: forever, or (with ``retention_ms``) until it expires."""
    expires: bool = True
    """Whether records expire after ``retention_ms`` (a compacted topic may keep its last ones forever)."""

    def kafka_config(self) -> dict[str, str]:
        policy = ",".join(name for name, on in (("compact", self.compacted), ("delete", self.expires)) if on)
        config = {"cleanup.policy": policy}
        if self.expires:
            config["retention.ms"] = str(self.retention_ms)
        if self.compacted:
            # Kafka compacts only closed segments, and rolls one after a week by default.
            config["segment.ms"] = str(COMPACTED_SEGMENT_MS)
        return config


ROOM_EVENTS = TopicSpec("room.events", RoomEvent)
AUDIO_RAW = TopicSpec("audio.raw", AudioFrame, AUDIO_RETENTION_MS)
TEXT_ORIGINAL = TopicSpec("text.original", Transcript)
TEXT_TRANSLATED = TopicSpec("text.translated", Translation)
AUDIO_SYNTHESIZED = TopicSpec("audio.synthesized", SynthesizedAudio, AUDIO_RETENTION_MS)
TRANSCRIPTION_REQUESTS = TopicSpec("transcription.requests", TranscriptionRequest, AUDIO_RETENTION_MS)
TRANSCRIPTS = TopicSpec("transcripts", TranscriptionUpdate, compacted=True, expires=False)
"""A file's latest transcription update, kept as long as the file's transcript is wanted."""
SIGNALING = TopicSpec("signaling", Signal, HOUR_MS)
UTTERANCES_DROPPED = TopicSpec("utterances.dropped", UtteranceDropped)
PIPELINE_LOAD = TopicSpec("pipeline.load", StageLoad, HOUR_MS)
DLQ = TopicSpec("pipeline.dlq", DeadLetter, 7 * DAY_MS, compacted=True)
"""Keyed by letter id: a letter's latest state (dead, then re-driven) for a week."""

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

REPLAY_TOPICS: dict[type[BaseModel], TopicSpec] = {
    spec.record: TopicSpec(f"replay.{spec.name}", spec.record, spec.retention_ms)
    for spec in (TEXT_ORIGINAL, TEXT_TRANSLATED, AUDIO_SYNTHESIZED)
}
"""Where ``dragoman replay reprocess`` writes, by record type: the same records as the live topics,
keyed by replay id and stamped with the replay's id and run in headers. No gateway reads them, so a
live socket never receives replayed captions or audio."""

ALL_TOPICS: tuple[TopicSpec, ...] = (*MEETING_TOPICS, *REPLAY_TOPICS.values())
BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in ALL_TOPICS}
BY_RECORD: dict[type[BaseModel], TopicSpec] = {spec.record: spec for spec in MEETING_TOPICS}
"""The live topic of each record type: where a stage sends what its transform yields."""
