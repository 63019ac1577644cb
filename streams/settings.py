"""All of Dragoman's configuration, in one object.

Every field reads the environment variable ``DRAGOMAN_<FIELD NAME>`` (upper
case). The description beside each field is its documentation; ``dragoman
config`` prints them as a table, and README's table is that output.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRAGOMAN_", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _tansu_defaults(cls, data: Any) -> Any:
        """Tansu never wakes a waiting fetch and has no idempotent producers: its own defaults, where unset."""
        if isinstance(data, dict) and data.get("broker", cls.model_fields["broker"].default) == "tansu":
            data.setdefault("fetch_max_wait_ms", 20)
            data.setdefault("idempotent_producers", False)
        return data

    # --- broker -------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None,
        description="host:port[,host:port] of an external Kafka. Unset: `up` starts the embedded broker.",
    )
    broker: Literal["kafka", "tansu"] = Field(
        "kafka",
        description="The embedded broker: `kafka` (Apache Kafka in KRaft mode, from infra/kafka's Maven pom) or "
        "`tansu` (in memory, or on S3).",
    )
    broker_port: int = Field(0, description="Port of the embedded broker on 127.0.0.1; 0 picks a free one.")
    broker_dir: Path | None = Field(
        None,
        description="kafka: its log directory, kept across restarts; unset: a temporary one, gone when it stops.",
    )
    broker_storage: str = Field(
        "memory://tansu/",
        description="tansu: where it keeps topics, records and offsets: `memory://tansu/`, lost when "
        "it dies, or `s3://BUCKET/`, kept across its restarts (the `AWS_*` variables, such as `AWS_ENDPOINT`, "
        "name the store).",
    )
    replication_factor: int = Field(
        1,
        ge=1,
        description="Replicas of every topic Dragoman creates, its own and Faust's changelogs: 3 on a "
        "three-broker Kafka with min.insync.replicas 2 (producers wait for all in-sync replicas).",
    )
    idempotent_producers: bool = Field(
        True,
        description="Idempotent producers (no duplicate on a retried send). Apache Kafka has them; Tansu fails "
        "their InitProducerId, so with DRAGOMAN_BROKER=tansu the default is false. The at-least-once dedupe by "
        "sequence number stays either way.",
    )
    exactly_once: bool = Field(
        False,
        description="Faust's exactly-once processing (`processing_guarantee`: a transaction per partition). Off: "
        "see the README's Apache Kafka section for what happened when it was tried.",
    )
    partitions: int = Field(
        4, ge=1, description="Partitions of every meeting topic (all keyed by room_id, so co-partitioned)."
    )
    fetch_max_wait_ms: int = Field(
        500,
        ge=1,
        description="Consumer fetch wait. Kafka answers a waiting fetch as soon as records arrive, so this only "
        "bounds idle polling. Tansu never wakes one, so there it is each hop's delivery latency, and with "
        "DRAGOMAN_BROKER=tansu the default is 20 (5 ms stalls a backlog; Faust's own 1500 ms made a 3-stage chain "
        "take 1.5 s).",
    )
    session_timeout_s: float = Field(
        6.0, gt=0, description="Consumer group session timeout; a new group waits about half of it on Tansu."
    )

    # --- gateway ------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Gateway listen address.")
    port: int = Field(8080, description="Gateway listen port.")
    jwt_secret: str | None = Field(
        None, description="HS256 secret for client tokens. Unset: `up` makes a random one and prints a token."
    )
    presence_lease_s: float = Field(
        12.0,
        gt=0,
        description="A participant whose gateway has not renewed its presence for this long has left the room "
        "(gateways renew every third of it, through room.events), so a dead gateway leaves no ghosts.",
    )
    frame_group_ms: int = Field(
        100, ge=10, le=1000, description="The gateway groups client PCM into audio.raw messages of this length."
    )
    send_queue_frames: int = Field(
        64,
        ge=1,
        description="Per-connection outbound queue; when full the oldest audio is dropped (reason=slow_client).",
    )
    max_speakers: int = Field(
        6,
        ge=1,
        description="Speakers (audio connections streaming) speech recognition admits over all its workers; "
        "a new speaker past it is refused with `overloaded`. `dragoman bench load` measures what a machine holds.",
    )
    admit_max_backlog_s: float = Field(
        1.5, gt=0, description="A new speaker is also refused while speech recognition runs this far behind."
    )
    audio_burst_s: float = Field(
        3.0,
        gt=0,
        description="Audio a connection may send ahead of real time; beyond it frames are refused (`rate_limited`). "
        "Over the 2 s the gateway may hold a socket while a partition's leader moves: what the client sent "
        "meanwhile arrives at once.",
    )
    commands_per_s: float = Field(
        10.0, gt=0, description="Text commands a connection may send per second; beyond it `rate_limited`."
    )
    max_ingest_backlog: int = Field(
        256,
        ge=1,
        description="Audio messages a gateway may have in flight to the broker; beyond it clients get `overloaded`.",
    )

    # --- models -------------------------------------------------------------
    models_dir: Path = Field(
        Path.home() / ".cache" / "dragoman" / "models",
        description="Where `dragoman models prepare` puts weights and engines load them from.",
    )
    stt_model: str = Field(
        "base", description="Whisper model (a directory under models_dir/whisper) for non-English speech."
    )
    stt_model_en: str = Field("tiny.en", description="Whisper model for English speech.")
    stt_device: str = Field("auto", description="`cpu`, `cuda`, or `auto` (cuda when present).")
    stt_compute_type: str = Field("int8", description="CTranslate2 compute type for Whisper (int8, float16, ...).")
    stt_threads: int = Field(
        1,
        ge=1,
        description="CPU threads one Whisper decode uses. Measured on 2 cores, 10 s of English through tiny.en: "
        "1 thread took 0.11 s, 2 threads 0.28 s, all of the loss in the decoder's token-by-token "
        "steps; base 0.25 against 0.52 s.",
    )
    nllb_model: str = Field(
        "nllb-200-distilled-600M",
        description="NLLB model directory under models_dir/nllb, used when its real weights are installed "
        "(`dragoman models fetch`); a test model with random weights is refused at start.",
    )

    apertium_pipelines: int = Field(
        16,
        ge=1,
        description="Apertium directions a translate worker keeps running (~160 MB each); one more closes the one "
        "used longest ago.",
    )

    # --- real-time behaviour --------------------------------------------------
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Silero speech probability that counts as speech.")
    vad_hangover_ms: int = Field(
        400,
        ge=100,
        description="Silence after speech that ends an utterance: the final caption's floor latency (through the "
        "stt transform alone, 100 ms frames, the bench's prompts: 0.48 s p50 at 400, 0.58 s at 500). Recorded prompts "
        "in en, es, fr and it are cut no more often at 400 than at 500 (1 more of 800).",
    )
    max_utterance_s: float = Field(15.0, gt=1, description="Longer speech is cut at its quietest point.")
    partial_interval_s: float = Field(
        0.8,
        gt=0,
        description="New audio between two partial hypotheses of one utterance (a word is committed when two "
        "agree: 0.8 s against 1.0 s took committed words' p50 from 1.87 to 1.56 s, at the same capacity).",
    )
    stale_after_s: float = Field(
        10.0,
        gt=0,
        description="Work older than this (since its speech ended or was captured) is dropped, reason=stale.",
    )

    # --- observability --------------------------------------------------------
    log_format: Literal["text", "json"] = Field(
        "text", description="`text`, or `json`: one JSON object per log line (time, logger, level, message)."
    )
    worker_web_host: str = Field(
        "127.0.0.1",
        description="Address the workers' web servers (/metrics, /ready) bind: 0.0.0.0 where a Prometheus in "
        "another container scrapes them (infra/compose.yaml).",
    )
    worker_web_port: int = Field(
        6066,
        description="First worker's Faust web port (/metrics); stt, translate, tts, transcribe take it, +1, +2, +3, "
        "and `up`'s own /metrics +4. Replica k (from 0) of a stage takes its port + 5k.",
    )
    replicas: int = Field(
        1,
        ge=1,
        description="Workers per live stage (stt, translate, tts) under `up` and `worker --stage all`: when one "
        "dies, the group rebalances its partitions onto the others. With 1, each keeps a warm spare instead.",
    )

    # --- file transcription -------------------------------------------------------
    max_transcriptions: int = Field(
        2, ge=1, description="File transcriptions one gateway runs at once; more are answered `busy`."
    )
    max_upload_mb: float = Field(50.0, gt=0, description="Largest file POST /v1/transcriptions accepts.")
    sse_keepalive_s: float = Field(10.0, gt=0, description="Keepalive comment interval on the SSE stream.")
    transcription_timeout_s: float = Field(
        900.0, gt=0, description="A transcription with no result by then is answered `upstream_error`."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
