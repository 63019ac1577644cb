"""The Grafana dashboard, as code (grafanalib). It writes infra/grafana/dashboards/dragoman.json:

    .venv/bin/python infra/dashboard.py

`infra/dev check` fails when the committed JSON is not what this makes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, RowPanel, Target, Time, TimeSeries

OUTPUT = Path(__file__).parent / "grafana" / "dashboards" / "dragoman.json"


def quantile(q: float, histogram: str, by: str, where: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({histogram}_bucket{where}[1m])))"


def p90(histogram: str, by: str) -> str:
    return quantile(0.9, histogram, by)


Panel = tuple[str, str, list[tuple[str, str]]]
"""(title, unit, [(query, legend)])"""

SLO: list[Panel] = [
    (f"{path.replace('_', ' ').capitalize()}: p50 / p90 / p99 against the targets", "s",
     [*((quantile(q, "dragoman_end_to_end_seconds", "path", f'{{path="{path}"}}'), f"p{round(q * 100)}")
        for q in (0.5, 0.9, 0.99)),
      (f"vector({target})", f"target: p90 ≤ {target} s")])
    for path, target in (("final_caption", 1.5), ("first_audio", 2.0))
]  # fmt: skip

# Rows of panels, what an SRE of this pipeline looks at first on top.
ROWS: dict[str, list[Panel]] = {
    "SLO: end of speech to final caption and to first audio": SLO,
    "Stages": [
        ("Messages consumed /s per stage", "ops",
         [("sum by (stage) (rate(dragoman_processed_total[1m]))", "{{stage}}")]),
        ("Stage processing (p90)", "s", [(p90("dragoman_stage_processing_seconds", "stage"), "{{stage}}")]),
        ("Model compute per message (p90)", "s", [(p90("dragoman_stage_compute_seconds", "stage"), "{{stage}}")]),
        ("Stage queueing (p90)", "s", [(p90("dragoman_stage_queueing_seconds", "stage"), "{{stage}}")]),
    ],
    "Kafka lag": [
        ("Consumer lag per group (messages)", "short",
         [("sum by (group) (dragoman_consumer_lag_messages)", "{{group}}")]),
        ("Consumer lag per group (age of the oldest uncommitted message)", "s",
         [("max by (group) (dragoman_consumer_lag_seconds)", "{{group}}")]),
        ("Consume lag (p90, seconds behind the producer)", "s",
         [(p90("dragoman_consume_lag_seconds", "stage"), "{{stage}}")]),
    ],
    "Drops and dead letters": [
        ("Utterances announced as dropped /s", "ops",
         [("sum by (stage, reason) (rate(dragoman_utterances_dropped_total[1m]))", "{{stage}} {{reason}}")]),
        ("Dropped frames and messages /s", "ops",
         [("sum by (stage, reason) (rate(dragoman_dropped_total[1m]))", "{{stage}} {{reason}}")]),
        ("Retries and dead letters (5 min)", "short",
         [("sum by (stage) (increase(dragoman_retries_total[5m]))", "retries {{stage}}"),
          ("sum by (stage) (increase(dragoman_dead_letters_total[5m]))", "dead letters {{stage}}")]),
    ],
    "Capacity": [
        ("Backlog behind real time per stage", "s", [("max by (stage) (dragoman_stage_backlog_seconds)", "{{stage}}")]),
        ("Inference busy share per stage", "percentunit",
         [("max by (stage) (dragoman_stage_busy_ratio)", "{{stage}}")]),
        ("Speakers admitted and refused /min", "short",
         [("sum by (result) (rate(dragoman_admissions_total[5m])) * 60", "{{result}}")]),
    ],
    "Gateway": [
        ("Open sockets, active rooms and speakers", "short",
         [("sum by (endpoint) (dragoman_connections)", "sockets {{endpoint}}"),
          ("sum(dragoman_active_rooms)", "rooms"), ("max(dragoman_active_speakers)", "speakers")]),
    ],
    "Processes": [
        ("Process memory (resident)", "bytes",
         [("process_resident_memory_bytes", "{{job}} {{instance}}"),
          ("dragoman_broker_process_resident_memory_bytes", "embedded broker")]),
        ("Restarts of crashed processes (1 h), and warm spares standing by", "short",
         [("sum by (process) (increase(dragoman_restarts_total[1h]))", "restarts {{process}}"),
          ("sum by (process) (dragoman_spare_warm)", "spare {{process}}")]),
        ("Model load and warm-up per worker", "s", [("max by (stage) (dragoman_model_load_seconds)", "{{stage}}")]),
        ("Scrape targets up", "short", [("up", "{{job}} {{instance}}")]),
    ],
}  # fmt: skip


def dashboard() -> Dashboard:
    panels: list[object] = []
    y = 0
    for row, row_panels in ROWS.items():
        panels.append(RowPanel(title=row, gridPos=GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        for n, (title, unit, targets) in enumerate(row_panels):
            panels.append(
                TimeSeries(
                    title=title,
                    unit=unit,
                    targets=[
                        Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i))
                        for i, (expr, legend) in enumerate(targets)
                    ],
                    gridPos=GridPos(h=8, w=12, x=12 * (n % 2), y=y + 8 * (n // 2)),
                )
            )
        y += 8 * ((len(row_panels) + 1) // 2)
    return Dashboard(title="Dragoman", uid="dragoman", panels=panels, time=Time("now-1h", "now")).auto_panel_ids()


def render() -> str:
    return json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        if OUTPUT.read_text() != render():
            sys.exit(f"{OUTPUT} is not what infra/dashboard.py makes: run it")
        panels = sum(len(row) for row in ROWS.values())
        print(f"{OUTPUT.name}: as infra/dashboard.py makes it ({len(ROWS)} rows, {panels} panels)")
    else:
        OUTPUT.write_text(render())
