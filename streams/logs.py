"""How every Dragoman process logs: one line per record on stderr, as text or as JSON
(``DRAGOMAN_LOG_FORMAT``), Dragoman's own loggers from INFO, third-party libraries only when they warn.
A line about one room, socket or utterance carries ``room_id``, ``session_id``, ``user_id``,
``speaker_id`` or ``utterance_id`` as fields (``extra=``): JSON lines show them, text lines do not.

The same configuration goes to Faust's worker (``faust.Worker(logging_config=...)``), so a
worker's lines look like everyone else's. What the model libraries would otherwise print once per
process and per call (Lightning's checkpoint-upgrade notice, pyannote's torchcodec warning,
WhisperX's per-call INFO lines) is silenced here, by logger and by warning, not by patching them.
"""

from __future__ import annotations

import logging.config
import warnings
from typing import Any

OURS = ("dragoman", "streams", "agents", "web")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class OursOrWarnings(logging.Filter):
    """Dragoman's records from INFO, anyone else's from WARNING: libraries that set their own
    loggers to INFO when imported (Lightning does) still say nothing unless it matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] in OURS


def config(log_format: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for ``text`` or ``json`` lines."""
    formatter: dict[str, Any] = {"format": TEXT_FORMAT}
    if log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": TEXT_FORMAT,
            "rename_fields": {"asctime": "time", "name": "logger", "levelname": "level"},
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"ours_or_warnings": {"()": OursOrWarnings}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["ours_or_warnings"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
    }


def setup(log_format: str) -> None:
    logging.config.dictConfig(config(log_format))
    # pyannote warns at import that torchcodec cannot decode files: Dragoman hands it arrays.
    warnings.filterwarnings("ignore", message=r"\s*torchcodec is not installed correctly")


def adopt_lightning() -> None:
    """Lightning gives its ``lightning`` logger a console handler of its own when imported (pyannote,
    under WhisperX, imports it): import it now and leave its records to ours, filtered like any other."""
    import lightning  # noqa: F401  - imported for its side effect on logging

    for handler in list(logging.getLogger("lightning").handlers):
        logging.getLogger("lightning").removeHandler(handler)
