"""What an SRE sees (issue #9): Debian's Prometheus scrapes the live `up` of this test session while
a meeting runs and a poison message is dead-lettered; then every query of the committed dashboard
returns data, and every alert rule of infra/alerts.yml evaluates healthy."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from streams.broker import free_port
from streams.topics import AUDIO_RAW
from tests.conftest import ARTIFACTS, Meeting
from tests.speech import prompt_pcm, silence
from tests.test_meeting import FRAME_BYTES
from web.auth import mint

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed"),
]

INFRA = Path(__file__).parent.parent / "infra"


@pytest.fixture
def prometheus(production: Meeting, tmp_path: Path) -> Iterator[str]:
    """Prometheus with infra/alerts.yml, scraping this `up` every second (its gateway, its four
    workers, and `up` itself), on a free port."""
    port = free_port()
    gateway = production.url.removeprefix("http://")
    workers = [f"127.0.0.1:{production.worker_port + i}" for i in range(4)]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(INFRA / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "gateway", "static_configs": [{"targets": [gateway]}]},
            {"job_name": "workers", "static_configs": [{"targets": workers}]},
            {"job_name": "supervisor", "static_configs": [{"targets": [f"127.0.0.1:{production.worker_port + 4}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (ARTIFACTS / "prometheus.log").open("w") as log:
        server = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=10)


def _a_warning(line: str) -> bool:
    """A library's line that matters: a warning or worse, or part of one's traceback."""
    return bool(re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|^\s", line))


def api(prometheus: str, path: str, **query: str) -> dict[str, object]:
    url = f"{prometheus}/api/v1/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return dict(body["data"])


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads((INFRA / "grafana" / "dashboards" / "dragoman.json").read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]


async def a_meeting_and_a_poison_message(system: Meeting) -> None:
    room = f"sre-{uuid.uuid4().hex[:8]}"

    def url(endpoint: str, user: str, query: str) -> str:
        return f"{system.ws_url}/ws/{endpoint}/{room}?token={mint(system.secret, room, user)}{query}"

    producer = AIOKafkaProducer(bootstrap_servers=system.broker)
    await producer.start()
    try:
        await producer.send_and_wait(AUDIO_RAW.name, key=room.encode(), value=b"poison: not an audio record")
    finally:
        await producer.stop()
    async with aiohttp.ClientSession() as http:
        listener = await http.ws_connect(url("audio", "ana", "&speak=es&listen=es"))
        speaker = await http.ws_connect(url("audio", "ben", "&speak=en&listen=en"))
        await listener.receive_json()
        await speaker.receive_json()
        await asyncio.sleep(1.0)
        for name in ("agent-loggedoff", "agent-loginok", "agent-newlocation"):
            pcm = silence(0.4) + prompt_pcm("en", name) + silence(1.2)
            for start in range(0, len(pcm), FRAME_BYTES):
                await speaker.send_bytes(pcm[start : start + FRAME_BYTES])
                await asyncio.sleep(0.1)
        await asyncio.sleep(4.0)  # the last utterance's speech reaches the listener
        # A client pushing audio faster than real time: refused, and counted.
        for _ in range(40):
            await speaker.send_bytes(silence(0.1))
        await asyncio.sleep(0.5)
        await speaker.close()
        await listener.close()


def test_every_dashboard_query_returns_data_and_every_alert_is_healthy(production: Meeting, prometheus: str) -> None:
    # Faults count only once Prometheus has seen the counters before them: wait for its first scrapes.
    deadline = time.monotonic() + 60
    while True:
        try:
            targets = api(prometheus, "targets")["activeTargets"]
        except OSError:
            targets = []
        if targets and all(t["health"] == "up" for t in targets):  # type: ignore[index,union-attr]
            break
        assert time.monotonic() < deadline, f"Prometheus never scraped everything: {targets}"
        time.sleep(0.5)
    time.sleep(2.0)
    asyncio.run(a_meeting_and_a_poison_message(production))
    time.sleep(12.0)  # a consumer lag measurement (every 10 s) and a few scrapes after the meeting

    empty = []
    for title, expr in dashboard_queries():
        result = api(prometheus, "query", query=expr)["result"]
        if not result:
            empty.append(f"{title}: {expr}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    faults = {
        'sum by (stage) (increase(dragoman_dead_letters_total{stage="stt"}[5m]))': "the poison message",
        'sum(increase(dragoman_dropped_total{stage="gateway", reason="rate_limited"}[5m]))': "the audio flood",
    }
    for expr, fault in faults.items():
        [sample] = api(prometheus, "query", query=expr)["result"]  # type: ignore[misc]
        assert float(sample["value"][1]) > 0, f"the dashboard did not see {fault}"  # type: ignore[index]

    groups = api(prometheus, "rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]  # type: ignore[union-attr]
    assert {rule["name"] for rule in rules} >= {"CaptionsLate", "DeadLetters", "GatewayDown"}
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert not unhealthy, unhealthy
    # `up`'s console: Dragoman's own lines only, no library chatter below WARNING.
    ours = re.compile(
        r"^\d{4}-\d\d-\d\d [\d:,]+ (dragoman|streams|agents|web)(\.\S+)? [A-Z]+ |^dragoman ready: |^warning: "
    )
    console = production.log.read_text().splitlines()
    foreign = [line for line in console if line.strip() and not ours.match(line) and not _a_warning(line)]
    assert not foreign, foreign[:10]
    targets = api(prometheus, "targets")["activeTargets"]
    assert {t["labels"]["job"] for t in targets if t["health"] == "up"} == {"gateway", "workers", "supervisor"}  # type: ignore[index,union-attr]
