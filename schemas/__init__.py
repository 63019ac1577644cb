"""The wire: records for every topic and their encoding. Imports nothing of the project."""

from schemas.records import (
    SAMPLE_RATE,
    SCHEMA_VERSION,
    AudioFrame,
    DeadLetter,
    Record,
    RoomEvent,
    RoomEventKind,
    Signal,
    SignalKind,
    StageTiming,
    SynthesizedAudio,
    Transcript,
    Translation,
)
from schemas.wire import SchemaVersionError, decode, encode

__all__ = [
    "SAMPLE_RATE",
    "SCHEMA_VERSION",
    "AudioFrame",
    "DeadLetter",
    "Record",
    "RoomEvent",
    "RoomEventKind",
    "SchemaVersionError",
    "Signal",
    "SignalKind",
    "StageTiming",
    "SynthesizedAudio",
    "Transcript",
    "Translation",
    "decode",
    "encode",
]
