"""Logs for machines and for people (streams/logs.py)."""

from __future__ import annotations

import json
import logging

import pytest

from streams import logs


def test_json_lines_carry_the_ids_of_what_they_are_about_and_libraries_only_warn(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.setup("json")
    try:
        logging.getLogger("streams.app").info("utterance dropped", extra={"room_id": "r1", "utterance_id": "s:7"})
        logging.getLogger("lightning.pytorch").info("a checkpoint was upgraded")
        logging.getLogger("lightning.pytorch").warning("a real problem")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("streams.app", "INFO", "utterance dropped"),
        ("lightning.pytorch", "WARNING", "a real problem"),
    ]
    assert lines[0]["room_id"] == "r1" and lines[0]["utterance_id"] == "s:7" and "time" in lines[0]
