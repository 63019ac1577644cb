"""Prometheus metrics, defined once and shared by every process.

Stage latency is read off the messages themselves (each carries its stages'
timings), so the gateway, which sees every stage's output, observes all of it
in one place; workers count what only they see: drops, retries, dead letters.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from schemas import Record

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

STAGE_PROCESSING = Histogram(
    "dragoman_stage_processing_seconds",
    "Time a stage spent on a message (received to sent), by stage.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
STAGE_QUEUEING = Histogram(
    "dragoman_stage_queueing_seconds",
    "Time a message waited between the previous stage sending it and this stage taking it.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
STAGE_COMPUTE = Histogram(
    "dragoman_stage_compute_seconds",
    "Model inference time inside a stage, by stage.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
CONSUME_LAG = Histogram(
    "dragoman_consume_lag_seconds",
    "Workers' view of every message they consume (silent audio included): previous stage sent it → taken.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END = Histogram(
    "dragoman_end_to_end_seconds",
    "End of speech to delivery at the gateway: path=final_caption (original final) or first_audio.",
    ["path"],
    buckets=LATENCY_BUCKETS,
)
DROPPED = Counter(
    "dragoman_dropped_total",
    "Frames or messages dropped on purpose, by where and why (stale, duplicate, bad_frame, slow_client, ...).",
    ["stage", "reason"],
)
UTTERANCES_DROPPED = Counter(
    "dragoman_utterances_dropped_total",
    "Utterances announced as dropped to their speaker and listeners, by the stage that gave up and why.",
    ["stage", "reason"],
)
ADMISSIONS = Counter(
    "dragoman_admissions_total",
    "New speakers the gateway admitted (result=admitted) or refused with overloaded (result=refused).",
    ["result"],
)
STAGE_BACKLOG = Gauge(
    "dragoman_stage_backlog_seconds",
    "How far behind real time a worker's newest work was over the last second (0 when idle).",
    ["stage"],
)
STAGE_BUSY = Gauge(
    "dragoman_stage_busy_ratio", "Share of the last second a worker's inference thread worked.", ["stage"]
)
CONSUMER_LAG_MESSAGES = Gauge(
    "dragoman_consumer_lag_messages",
    "Messages past a consumer group's committed offset (end − committed), per partition.",
    ["group", "topic", "partition"],
)
CONSUMER_LAG_SECONDS = Gauge(
    "dragoman_consumer_lag_seconds",
    "Age of the oldest message a consumer group has not committed (0 when none waits), per partition.",
    ["group", "topic", "partition"],
)
MODEL_LOAD = Gauge(
    "dragoman_model_load_seconds", "How long this worker took to load and warm up its models.", ["stage"]
)
RETRIES = Counter("dragoman_retries_total", "Transform attempts that failed and were retried.", ["stage"])
DEAD_LETTERS = Counter("dragoman_dead_letters_total", "Messages sent to pipeline.dlq.", ["stage"])
PROCESSED = Counter("dragoman_processed_total", "Messages a stage consumed.", ["stage"])
CONNECTIONS = Gauge("dragoman_connections", "Open client WebSockets on this gateway.", ["endpoint"])
ACTIVE_ROOMS = Gauge("dragoman_active_rooms", "Rooms with at least one socket open on this gateway.")
ACTIVE_SPEAKERS = Gauge(
    "dragoman_active_speakers", "Speakers whose audio the speech stage took in the last few seconds (its reports)."
)
RESTARTS = Counter("dragoman_restarts_total", "Children `dragoman up` started again after they died.", ["process"])
SPARE_WARM = Gauge(
    "dragoman_spare_warm", "1 while a worker's warm spare stands by under `dragoman up` to take over.", ["process"]
)


def observe_last_stage(record: Record) -> None:
    """Observe the stage that produced ``record`` (its last timing) and the wait before it.

    Only the last timing: earlier stages were observed on their own outputs.
    """
    if not record.timings:
        return
    last = record.timings[-1]
    STAGE_PROCESSING.labels(last.stage).observe(max(0.0, last.sent_at - last.received_at))
    if last.compute_s:
        STAGE_COMPUTE.labels(last.stage).observe(last.compute_s)
    if len(record.timings) > 1:
        STAGE_QUEUEING.labels(last.stage).observe(max(0.0, last.received_at - record.timings[-2].sent_at))
