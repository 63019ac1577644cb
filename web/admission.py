"""What the gateway knows of the pipeline's load: readiness and admission of new speakers.

Pure: :class:`PipelineLoad` keeps the newest :class:`~schemas.StageLoad` of
every worker (the egress consumer feeds it from ``pipeline.load``);
:class:`Admission` decides whether a new speaker may start. Capacity is a
number of speakers, measured by ``dragoman bench load``: past it, or while
speech recognition runs behind real time, a new speaker is refused with
``overloaded`` rather than every admitted speaker getting slower.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas import StageLoad

FRESH_S = 3.0
"""A report older than this is from a worker that is gone (workers report every second). A speaker
this gateway admitted is in the reports well within it."""


class PipelineLoad:
    def __init__(self, stage_partitions: Mapping[str, int]) -> None:
        self._stage_partitions = dict(stage_partitions)
        self._reports: dict[str, StageLoad] = {}

    def update(self, report: StageLoad) -> None:
        self._reports[report.key] = report

    def _fresh(self, stage: str, now: float) -> list[StageLoad]:
        return [r for r in self._reports.values() if r.stage == stage and now - r.at < FRESH_S]

    def readiness(self, now: float) -> dict[str, bool]:
        """Per stage: do ready workers, warm and out of any rebalance, own every partition of its source?"""
        ready = {}
        for stage, partitions in self._stage_partitions.items():
            owned = {p for r in self._fresh(stage, now) if r.ready for p in r.partitions}
            ready[stage] = owned >= set(range(partitions))
        return ready

    def active_streams(self, stage: str, now: float) -> set[str]:
        return {key for r in self._fresh(stage, now) for key in r.active_streams}

    def backlog_s(self, stage: str, now: float) -> float:
        return max((r.backlog_s for r in self._fresh(stage, now)), default=0.0)


class Admission:
    """Admits a new speaker while speech recognition has room: fewer than ``max_speakers`` streaming
    and no more than ``max_backlog_s`` behind real time.

    Workers report the speakers (session ids) they heard once a second, so a speaker this gateway
    admitted counts on its own until a report shows it: a burst of joins cannot all slip in before
    the next report, and a speaker already in a report is not counted twice.
    """

    def __init__(self, load: PipelineLoad, max_speakers: int, max_backlog_s: float) -> None:
        self._load = load
        self._max_speakers = max_speakers
        self._max_backlog_s = max_backlog_s
        self._admitted: dict[str, float] = {}
        """Session id → when this gateway admitted it, until a report shows it."""

    def admit(self, session_id: str, now: float) -> bool:
        streaming = self._load.active_streams("stt", now)
        for session, at in list(self._admitted.items()):  # a few entries: the last seconds' admissions
            if session in streaming or at < now - FRESH_S:
                del self._admitted[session]  # the reports count it now (or it never spoke)
        speakers = len(streaming) + len(self._admitted)
        if speakers >= self._max_speakers or self._load.backlog_s("stt", now) > self._max_backlog_s:
            return False
        self._admitted[session_id] = now
        return True
