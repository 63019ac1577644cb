"""`infra/` as CI sees it: Prometheus accepts its config and rules, every alert's unit test passes,
and the committed dashboard is what infra/dashboard.py makes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).parent.parent / "infra"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus is not installed")


def run(*command: str) -> str:
    done = subprocess.run(command, cwd=INFRA, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@needs_promtool
@pytest.mark.parametrize(
    "check",
    [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"), ("test", "rules", "alerts.test.yml")],
)
def test_promtool_accepts_infra(check: tuple[str, ...]) -> None:
    assert "SUCCESS" in run("promtool", *check)


def test_every_alert_has_a_unit_test_and_a_runbook_entry() -> None:
    alerts = {rule["alert"] for group in yaml.safe_load((INFRA / "alerts.yml").read_text())["groups"]
              for rule in group["rules"]}  # fmt: skip
    tested = {case["alertname"] for test in yaml.safe_load((INFRA / "alerts.test.yml").read_text())["tests"]
              for case in test["alert_rule_test"]}  # fmt: skip
    runbook = (INFRA / "RUNBOOK.md").read_text()
    assert alerts == tested
    assert not [alert for alert in alerts if f"## {alert}\n" not in runbook]


def test_the_committed_dashboard_is_what_the_code_makes() -> None:
    run(sys.executable, "dashboard.py", "--check")


def test_compose_parses_and_runs_only_images_and_commands_that_exist() -> None:
    """What can be checked here without Docker: the YAML, and that every service runs a real
    `dragoman` subcommand (docker compose config itself runs in infra/dev check where it exists)."""
    from streams.cli import main

    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        command = service.get("command")
        if command and command[0] == "dragoman":
            with pytest.raises(SystemExit) as help_exit:
                main([*command[1:], "--help"])
            assert help_exit.value.code == 0, name
    assert (INFRA / "Dockerfile").read_text().count("FROM ") == 2  # the build stage and the slim one
