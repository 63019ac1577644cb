"""The client protocol (PROTOCOL.md) as types: every message a client sends or receives.

Commands (client → server) are parsed by one :data:`COMMANDS` adapter, discriminated by ``type``.
Server messages are models rendered with :func:`render`; on the captions socket the discriminator
is ``event``, on the SSE stream of ``POST /v1/transcriptions`` the event's name. The JSON Schema of
all of them (:func:`json_schema`) is what the README prints and a test checks PROTOCOL.md against.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas import SAMPLE_RATE, DropReason


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ErrorCode = Literal["bad_frame", "bad_request", "unsupported_language", "overloaded", "rate_limited", "unavailable"]


def render(message: Message) -> str:
    """A message as the JSON text frame (or SSE data line) the client receives."""
    return message.model_dump_json(by_alias=True)


def error(code: ErrorCode, message: str) -> str:
    """An ``error`` message, rendered: every endpoint's way of refusing what it cannot take."""
    return render(Error(code=code, message=message))


# --- client → server --------------------------------------------------------------------------


class ClientMessage(Message):
    """What a client sends: fields a newer client adds are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")


class Languages(ClientMessage):
    """Change languages mid-meeting (audio socket); either may be left out."""

    type: Literal["languages"]
    speak: str | None = None
    listen: str | None = None


class Flush(ClientMessage):
    """End the current utterance now (push-to-talk release)."""

    type: Literal["flush"]


class AudioCommand(ClientMessage):
    """PCM for clients that cannot send binary frames, base64-encoded."""

    type: Literal["audio"]
    pcm_b64: str


class Ping(ClientMessage):
    type: Literal["ping"]


class SignalCommand(ClientMessage):
    """WebRTC signaling to one peer (signaling socket)."""

    type: Literal["offer", "answer", "ice"]
    to: str
    """The peer's user id."""
    payload: dict[str, Any] = Field(default_factory=dict)


Command = Annotated[Languages | Flush | AudioCommand | Ping | SignalCommand, Field(discriminator="type")]
COMMANDS: TypeAdapter[Command] = TypeAdapter(Command)
COMMAND_TYPES = frozenset(("languages", "flush", "audio", "ping", "offer", "answer", "ice"))


# --- server → client: audio and signaling sockets ------------------------------------------


class Session(Message):
    type: Literal["session"] = "session"
    session_id: str
    room_id: str
    user_id: str
    speak: str
    listen: str
    sample_rate: int = SAMPLE_RATE


class Pong(Message):
    type: Literal["pong"] = "pong"


class Error(Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str


class AboutUtterance(Message):
    """A message about one utterance of one speaker (each subclass fixes ``type``)."""

    type: str
    speaker_id: str
    utterance_id: str


class UtteranceDroppedMessage(AboutUtterance):
    type: Literal["utterance_dropped"] = "utterance_dropped"
    language: str
    reason: DropReason


class AudioStart(AboutUtterance):
    type: Literal["audio_start"] = "audio_start"
    language: str
    sample_rate: int


class AudioEnd(AboutUtterance):
    type: Literal["audio_end"] = "audio_end"


class LanguageUnreachable(Message):
    """Proposed for PROTOCOL.md: a speaker nothing here translates into this listener's language."""

    type: Literal["language_unreachable"] = "language_unreachable"
    speaker_id: str
    source_language: str
    language: str | None
    message: str


class Participant(Message):
    user_id: str
    name: str | None
    speak: str
    listen: str


class Participants(Message):
    type: Literal["participants"] = "participants"
    participants: list[Participant]


class RelayedSignal(Message):
    type: Literal["offer", "answer", "ice"]
    from_user: str = Field(alias="from")
    payload: dict[str, Any]


class SuppressOriginal(AboutUtterance):
    type: Literal["suppress_original"] = "suppress_original"
    language: str


class RestoreOriginal(Message):
    type: Literal["restore_original"] = "restore_original"
    speaker_id: str


ServerMessage = Annotated[
    Session | Pong | Error | UtteranceDroppedMessage | AudioStart | AudioEnd | LanguageUnreachable | Participants
    | RelayedSignal | SuppressOriginal | RestoreOriginal,
    Field(discriminator="type"),
]  # fmt: skip


# --- server → client: captions socket ------------------------------------------------------


class Caption(Message):
    event: Literal["caption"] = "caption"
    speaker_id: str
    utterance_id: str
    language: str
    source_language: str
    text: str
    tentative: str = ""
    """Proposed for PROTOCOL.md: a partial's newest words, not confirmed yet (show them as tentative)."""
    is_final: bool
    timestamp_ms: int
    backlog: bool = False


class CaptionDropped(Message):
    event: Literal["dropped"] = "dropped"
    speaker_id: str
    utterance_id: str
    language: str
    reason: DropReason
    timestamp_ms: int


class Unreachable(Message):
    """Proposed for PROTOCOL.md: the captions socket's form of :class:`LanguageUnreachable`."""

    event: Literal["unreachable"] = "unreachable"
    speaker_id: str
    source_language: str
    language: str | None


CaptionEvent = Annotated[Caption | CaptionDropped | Unreachable, Field(discriminator="event")]


# --- server → client: POST /v1/transcriptions (server-sent events) -------------------------


class Segment(Message):
    start: float
    end: float
    text: str


class TranscriptionProgress(Message):
    """``event: transcription``."""

    segments: list[Segment]
    current_time: float
    total_time: float


class TranscriptionDone(Message):
    """``event: done``."""

    id: str
    language: str
    segments: list[Segment]
    text: str


class TranscriptionError(Message):
    """``event: error``."""

    code: Literal["bad_audio", "busy", "unavailable", "upstream_error", "internal_error"]
    detail: str


SSE_EVENTS: dict[str, type[Message]] = {
    "transcription": TranscriptionProgress,
    "done": TranscriptionDone,
    "error": TranscriptionError,
}


def by_tag() -> dict[str, type[Message]]:
    """Each socket message's model by its ``type`` or ``event`` (``offer``/``answer``/``ice``: the
    command; what the peer receives is :class:`RelayedSignal`)."""
    models: dict[str, type[Message]] = {}
    for union in (ServerMessage, CaptionEvent, Command):  # commands last: they win the shared tags
        for model in get_args(get_args(union)[0]):
            tag = model.model_fields.get("type") or model.model_fields["event"]
            models.update(dict.fromkeys(get_args(tag.annotation), model))
    return models


def json_schema() -> dict[str, Any]:
    """Every message of the protocol, by where it travels."""
    return {
        "commands": COMMANDS.json_schema(),
        "server_messages": TypeAdapter(ServerMessage).json_schema(by_alias=True),
        "caption_events": TypeAdapter(CaptionEvent).json_schema(),
        "transcription_events": {name: model.model_json_schema() for name, model in SSE_EVENTS.items()},
    }


if __name__ == "__main__":  # python -m web.protocol: the schema the README shows
    print(json.dumps(json_schema(), indent=1, ensure_ascii=False))
