"""`infra/` as CI sees it: Prometheus accepts its config and rules, every alert's unit test passes,
and the committed dashboard is what infra/dashboard.py makes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).parent.parent / "infra"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus is not installed")


def run(*command: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=INFRA, capture_output=True, text=True, env={**os.environ, **(env or {})})
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


def test_compose_runs_only_commands_that_exist() -> None:
    from streams.cli import main

    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        command = service.get("command")
        if command and command[0] == "dragoman":
            with pytest.raises(SystemExit) as help_exit:
                main([*command[1:], "--help"])
            assert help_exit.value.code == 0, name


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_the_deployment_passes_what_can_check_it_without_docker() -> None:
    """The checks of `infra/dev check` (see there): Compose resolves the file, the Compose
    Specification's schema accepts it, and hadolint accepts the Dockerfile with no finding."""
    bin_dir = Path(sys.executable).parent
    run("docker-compose", "-f", "compose.yaml", "config", "-q", env={"DRAGOMAN_JWT_SECRET": "x"})
    run(str(bin_dir / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml")
    run(str(bin_dir / "hadolint"), "Dockerfile")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_the_deployment_checks_catch_mistakes(tmp_path: Path) -> None:
    """A misspelt key, a dependency on a missing service and an unknown instruction each fail."""
    broken = (INFRA / "compose.yaml").read_text().replace("healthcheck:", "helthcheck:", 1)
    (tmp_path / "typo.yaml").write_text(broken)
    (tmp_path / "dangling.yaml").write_text("services:\n  a: {image: x, depends_on: [b]}\n")
    (tmp_path / "Dockerfile").write_text((INFRA / "Dockerfile").read_text().replace("WORKDIR", "WORKDRI", 1))
    bin_dir = Path(sys.executable).parent
    for command in (
        [str(bin_dir / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "typo.yaml"],
        ["docker-compose", "-f", "dangling.yaml", "config", "-q"],
        [str(bin_dir / "hadolint"), "Dockerfile"],
    ):
        assert subprocess.run(command, cwd=tmp_path, capture_output=True).returncode != 0, command


def test_the_image_installs_the_apertium_pairs_that_infra_dev_does() -> None:
    """Every translation direction offered here is offered in the image too (GET /v1/languages)."""
    dev = re.search(r"APERTIUM_PAIRS=\(([^)]*)\)", (INFRA / "dev").read_text())
    assert dev is not None
    image = set(re.findall(r"\bapertium-[a-z-]+", (INFRA / "Dockerfile").read_text()))
    assert set(dev.group(1).split()) == image


def test_compose_runs_the_kafka_version_the_tests_run() -> None:
    pinned = re.search(r"<kafka.version>([^<]+)</kafka.version>", (INFRA / "kafka" / "pom.xml").read_text())
    assert pinned is not None
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{pinned.group(1)}"
