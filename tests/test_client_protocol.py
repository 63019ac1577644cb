"""The typed client protocol (web/protocol.py) against PROTOCOL.md's messages, and the README's schema.

PROTOCOL.md lives beside the repository (``../shared``), not in it: its messages are copied here, and
where it is present the copy is checked against it, so a fresh clone still checks the models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from web.protocol import (
    COMMANDS,
    Caption,
    Message,
    RelayedSignal,
    SignalCommand,
    TranscriptionDone,
    TranscriptionError,
    TranscriptionProgress,
    by_tag,
    json_schema,
)

ROOT = Path(__file__).parents[1]
PROTOCOL = ROOT.parent / "shared" / "PROTOCOL.md"
MESSAGES = [
    '{"type": "languages", "speak": "de", "listen": "en"}',
    '{"type": "flush"}',
    '{"type": "audio", "pcm_b64": "…"}',
    '{"type": "ping"}',
    '{"type": "pong"}',
    '{"type": "session", "session_id", "room_id", "user_id", "speak", "listen", "sample_rate": 16000}',
    '{"type": "audio_start", "speaker_id", "utterance_id", "language", "sample_rate"}',
    '{"type": "audio_end", "speaker_id", "utterance_id"}',
    '{"type": "error", "code", "message"}',
    '{"type": "utterance_dropped", "speaker_id", "utterance_id", "language", "reason"}',
    '{"event": "dropped", "speaker_id", "utterance_id", "language", "reason", "timestamp_ms"}',
    '{"type": "offer"|"answer"|"ice", "to": "<user id>", "payload": {…}}',
    '{"type": …, "from": "<user id>", "payload": {…}}',
    '{"type": "participants", "participants": [{"user_id", "name", "speak", "listen"}]}',
    '{"type": "suppress_original", "speaker_id", "utterance_id", "language"}',
    '{"type": "restore_original", "speaker_id"}',
    '{"segments": [{"start", "end", "text"}], "current_time", "total_time"}',
    '{"id": "<sha256 of the body>", "language", "segments", "text"}',
    '{"code", "detail"}',
    '{"name": "<display name>", "room": "<room id>"}',
    '{"token": "…", "user_id": "…"}',
]
"""Every inline message of PROTOCOL.md, in its order (field lists, not all of them JSON)."""
HTTP_BODIES = {'{"name": "<display name>", "room": "<room id>"}', '{"token": "…", "user_id": "…"}'}
"""``POST /v1/tokens``'s request and answer: HTTP bodies, not messages of the sockets or the SSE stream."""
CAPTION_EXAMPLE = {
    "event": "caption", "speaker_id": "u-17", "utterance_id": "u-17:42", "language": "es", "source_language": "en",
    "text": "Hola, ¿cómo estás?", "is_final": True, "timestamp_ms": 1710419000000, "backlog": False,
}  # fmt: skip


def test_the_copy_is_protocol_mds_messages() -> None:
    if not PROTOCOL.exists():
        pytest.skip(f"{PROTOCOL} is not beside this checkout: the copy above is what is checked")
    text = PROTOCOL.read_text()
    assert re.findall(r"`(\{[^`]*\})`", text) == MESSAGES
    example = re.search(r"```json\n(.*?)```", text, re.S)
    assert example and json.loads(example.group(1)) == CAPTION_EXAMPLE


def fields(snippet: str) -> tuple[set[str], list[set[str]]]:
    """A message's field names, and those of the objects in its lists."""
    nested = re.findall(r"\[\{([^{}]*)\}\]", snippet)
    top = re.sub(r"\[\{[^{}]*\}\]", "[]", snippet)
    top = re.sub(r':\s*("[^"]*"(\|"[^"]*")*|\{…\}|…|\d+|\[\])', ":", top)  # values out: names are left
    return set(re.findall(r'"([a-z0-9_]+)"', top)), [set(re.findall(r'"([a-z0-9_]+)"', n)) for n in nested]


def model_for(snippet: str, names: set[str]) -> type[Message]:
    if "to" in names:
        return SignalCommand
    if "from" in names:
        return RelayedSignal
    if {"segments", "current_time"} <= names:
        return TranscriptionProgress
    if {"id", "segments"} <= names:
        return TranscriptionDone
    if names == {"code", "detail"}:
        return TranscriptionError
    tag = re.search(r'"(?:type|event)":\s*"([a-z0-9_]+)"', snippet)
    assert tag, snippet
    return by_tag()[tag.group(1)]


def names_of(model: type[BaseModel]) -> tuple[set[str], set[str]]:
    """(every field, the required ones), by the names on the wire."""
    every = {field.alias or name for name, field in model.model_fields.items()}
    required = {field.alias or name for name, field in model.model_fields.items() if field.is_required()}
    return every, required


@pytest.mark.parametrize("snippet", [m for m in MESSAGES if m not in HTTP_BODIES])
def test_every_message_of_protocol_md_has_a_model_with_its_fields(snippet: str) -> None:
    names, nested = fields(snippet)
    model = model_for(snippet, names)
    every, required = names_of(model)
    assert names <= every, f"{model.__name__} lacks {names - every}"
    assert required - {"type", "event"} <= names, f"{model.__name__} requires {required - names}"
    for inner in nested:
        [list_field] = [f for f in model.model_fields.values() if f.annotation and "list[" in str(f.annotation)]
        item = list_field.annotation.__args__[0]  # type: ignore[union-attr]
        inner_every, inner_required = names_of(item)
        assert inner == inner_every and inner_required <= inner, item.__name__


def test_the_caption_example_parses_and_renders_back() -> None:
    caption = Caption.model_validate(CAPTION_EXAMPLE)
    assert {k: v for k, v in json.loads(caption.model_dump_json()).items() if k != "tentative"} == CAPTION_EXAMPLE


def test_one_adapter_parses_every_command() -> None:
    for snippet in ('{"type": "languages", "speak": "de", "listen": "en"}', '{"type": "flush"}',
                    '{"type": "ping"}', '{"type": "ice", "to": "bob", "payload": {"candidate": "x"}}'):  # fmt: skip
        command = COMMANDS.validate_json(snippet)
        assert command.type == json.loads(snippet)["type"]


def test_the_readme_shows_the_schema_the_models_make() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- protocol-schema -->\n```json\n(.*?)```\n<!-- /protocol-schema -->", readme, re.S)
    assert block, "README has no protocol schema block (python -m web.protocol prints it)"
    assert json.loads(block.group(1)) == json_schema(), "README's schema is stale: python -m web.protocol"
