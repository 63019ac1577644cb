"""One record per topic: what Dragoman puts on the wire.

Every record carries ``schema_version`` (so a consumer can refuse what it does
not understand) and ``timings``: one entry per stage it passed, appended by
that stage, so per-stage and end-to-end latency is read off the message itself
wherever it ends up. Times are Unix epoch seconds (``time.time()``): stages run
in different processes, and only wall-clock time is comparable between them.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
SAMPLE_RATE = 16_000
"""Every PCM payload in the pipeline is 16 kHz mono signed 16-bit little-endian."""


class StageTiming(BaseModel):
    """When one stage took a message in and sent its result on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    received_at: float
    sent_at: float
    compute_s: float = 0.0
    """Seconds of model inference inside the stage (zero for pure routing)."""


class Envelope(BaseModel):
    """Fields every message of a pipeline topic shares: schema version, stage timings, and its key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    binary: ClassVar[bool] = False
    """True for records that carry PCM: they travel as MessagePack, not JSON."""

    schema_version: int = SCHEMA_VERSION
    timings: tuple[StageTiming, ...] = ()

    @property
    def key(self) -> str:
        """The Kafka key: what keeps related messages in order on one partition."""
        raise NotImplementedError

    def stamped(self, stage: str, received_at: float, sent_at: float, compute_s: float = 0.0) -> Self:
        """A copy with one more stage timing appended."""
        timing = StageTiming(stage=stage, received_at=received_at, sent_at=sent_at, compute_s=compute_s)
        return self.model_copy(update={"timings": (*self.timings, timing)})


class Record(Envelope):
    """A meeting message: keyed by ``room_id``, so one room's events stay in order on one partition."""

    room_id: str

    @property
    def key(self) -> str:
        return self.room_id


class RoomEventKind(enum.StrEnum):
    JOINED = "joined"
    LEFT = "left"
    LANGUAGES_CHANGED = "languages_changed"
    RENEWED = "renewed"


class RoomEvent(Record):
    """A participant connection joined, left or changed languages (topic ``room.events``).

    Participants are connections (``session_id``), not users: one user with two
    tabs is two participants. A captions-only viewer has ``speak=None``.

    Presence is a lease. Every gateway renews the participants it serves with one ``renewed``
    event per room every third of ``Settings.presence_lease_s`` (``gateway_id`` set; no session,
    user or languages). A participant whose gateway has not renewed within the lease has left, so
    a gateway that dies leaves no ghosts.
    """

    kind: RoomEventKind
    session_id: str
    user_id: str
    name: str = ""
    speak: str | None = None
    listen: str
    at: float
    gateway_id: str = ""
    """The gateway that serves the connection (or, for ``renewed``, that renews its participants)."""


class AudioFrame(Record):
    """About 100 ms of one speaker's microphone audio (topic ``audio.raw``).

    ``language`` is the speaker's speaking language when the audio was captured:
    the recognizer reads it from the frame, so it never races the room table.
    An empty frame with ``end_of_utterance`` set is the client's ``flush``.
    """

    binary: ClassVar[bool] = True

    session_id: str
    speaker_id: str
    sequence_number: int = Field(ge=0)
    captured_at: float
    """Wall-clock time of the first sample."""
    sample_rate: int = SAMPLE_RATE
    language: str
    pcm: bytes = b""
    end_of_utterance: bool = False


class SpokenText(Record):
    """What one speaker said in one utterance, as text in one language: the fields a transcript and
    its translations share, so a caption is rendered from either."""

    speaker_id: str
    utterance_id: str
    revision: int = Field(ge=0)
    language: str
    text: str
    is_final: bool
    tentative: str = ""
    """A partial's newest words after ``text`` that no second hypothesis has confirmed yet: they may
    change or go (show them as tentative). Empty on finals and on translations."""
    audio_start_s: float
    """Start of the utterance, in seconds of the speaker's stream."""
    audio_end_s: float
    speech_started_at: float
    """Wall-clock time of the utterance's first voiced audio: where its subtitle cue starts."""
    speech_ended_at: float
    """Wall-clock time of the last audio this hypothesis covers: end-to-end latency starts here."""


class Transcript(SpokenText):
    """A partial or final recognition of one utterance, in the language it was spoken (topic
    ``text.original``)."""

    @property
    def source_language(self) -> str:
        return self.language


class Translation(SpokenText):
    """A transcript rendered in one listening language (topic ``text.translated``).

    ``language`` equals ``target_language``, so captions route on one field.
    """

    source_language: str
    target_language: str


class SynthesizedAudio(Record):
    """One chunk of translated speech (topic ``audio.synthesized``)."""

    binary: ClassVar[bool] = True

    speaker_id: str
    utterance_id: str
    language: str
    chunk_index: int = Field(ge=0)
    is_last: bool
    sample_rate: int = SAMPLE_RATE
    pcm: bytes
    speech_ended_at: float


DropReason = Literal["stale", "overloaded", "error"]
"""Why an utterance is not delivered: older than a stage's budget when it could be worked on, shed
under load, or its model kept failing (the input is dead-lettered too)."""


class UtteranceDropped(Record):
    """An utterance the pipeline will not deliver, announced to its speaker and its listeners (topic
    ``utterances.dropped``) so that no speech is lost silently. ``language`` is the one that is missing:
    the original's for a recognition dropped by ``stt``, a target's for a translation or its speech."""

    speaker_id: str
    utterance_id: str
    language: str
    stage: str
    reason: DropReason
    speech_ended_at: float

    @classmethod
    def of(cls, record: SpokenText | SynthesizedAudio, stage: str, reason: DropReason) -> UtteranceDropped:
        return cls(
            room_id=record.room_id,
            timings=record.timings,
            speaker_id=record.speaker_id,
            utterance_id=record.utterance_id,
            language=record.language,
            stage=stage,
            reason=reason,
            speech_ended_at=record.speech_ended_at,
        )


class StageLoad(Envelope):
    """What one worker of a stage reports about itself every second (topic ``pipeline.load``): the
    gateway reads it for readiness (every stage owns every partition with warm models) and for
    admission (a new speaker is refused while speech recognition is past capacity)."""

    stage: str
    worker_id: str
    at: float
    ready: bool
    """Models loaded and warmed, partitions assigned, not rebalancing."""
    partitions: tuple[int, ...]
    """Partitions of the stage's source topic this worker owns."""
    backlog_s: float
    """How far behind real time its newest work is: taken − captured (audio) or − sent (text)."""
    busy: float
    """Share of the last report period its inference thread spent working, 0 to 1."""
    active_streams: tuple[str, ...]
    """Streams (for stt: speakers' session ids) that sent something within the last few seconds."""

    @property
    def key(self) -> str:
        return f"{self.stage}:{self.worker_id}"


class SignalKind(enum.StrEnum):
    OFFER = "offer"
    ANSWER = "answer"
    ICE = "ice"


class Signal(Record):
    """WebRTC signaling from one participant to another (topic ``signaling``), relayed by user id
    through the broker so the two may be connected to different gateway instances."""

    kind: SignalKind
    from_user: str
    to_user: str
    payload: dict[str, Any]


class TranscriptionRequest(Envelope):
    """One piece (at most ``PIECE_S`` seconds) of an uploaded file to transcribe (topic
    ``transcription.requests``, keyed by the file's sha256 so its pieces stay in order)."""

    binary: ClassVar[bool] = True
    PIECE_S: ClassVar[float] = 20.0

    transcription_id: str
    language: str | None
    """None: detect it."""
    piece_index: int = Field(ge=0)
    pieces: int = Field(ge=1)
    offset_s: float
    total_s: float
    pcm: bytes

    @property
    def key(self) -> str:
        return self.transcription_id


class TranscriptionStatus(enum.StrEnum):
    PROGRESS = "progress"
    DONE = "done"
    ERROR = "error"


class Segment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: float
    end: float
    text: str


class TranscriptionUpdate(Envelope):
    """Progress and result of a file transcription (topic ``transcripts``, keyed by the file's
    sha256 and compacted: the last update of a finished file is its ``done``, the transcript store)."""

    transcription_id: str
    status: TranscriptionStatus
    language: str | None
    segments: tuple[Segment, ...] = ()
    current_time: float = 0.0
    total_time: float = 0.0
    error_code: str | None = None
    detail: str | None = None

    @property
    def key(self) -> str:
        return self.transcription_id

    @property
    def text(self) -> str:
        return " ".join(segment.text for segment in self.segments).strip()


class DeadLetter(BaseModel):
    """A message a stage gave up on, with enough to send it back (topic ``pipeline.dlq``).

    ``dragoman dlq redrive`` sends ``value`` back to ``topic`` and appends the same letter with
    ``redriven_at`` set: the letter's latest entry in the log says whether it is still dead. Both
    are keyed by :attr:`letter_id`, so on a compacted topic the re-driven entry replaces the dead one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    binary: ClassVar[bool] = True

    schema_version: int = SCHEMA_VERSION
    stage: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: str
    attempts: int
    """Every attempt so far, counting those before each re-drive."""
    failed_at: float
    redriven_at: float | None = None

    @property
    def letter_id(self) -> str:
        """Where the failed message was: ``topic:partition:offset``."""
        return f"{self.topic}:{self.partition}:{self.offset}"
