"""Bytes on the wire: JSON for text records, MessagePack for records with PCM.

MessagePack carries ``bytes`` natively, so audio never goes through base64.
"""

from __future__ import annotations

import json
from typing import TypeVar

import msgpack
from pydantic import BaseModel

from schemas.records import SCHEMA_VERSION

ModelT = TypeVar("ModelT", bound=BaseModel)


class SchemaVersionError(ValueError):
    """A record written by a newer (or unknown) schema than this code reads."""


def encode(record: BaseModel) -> bytes:
    """Serialize a record in its wire format."""
    if getattr(record, "binary", False):
        packed: bytes = msgpack.packb(record.model_dump(mode="python"), use_bin_type=True)
        return packed
    return record.model_dump_json().encode()


def decode(model: type[ModelT], data: bytes) -> ModelT:
    """Parse and validate one record; raises ``ValueError`` on anything malformed."""
    try:
        raw = msgpack.unpackb(data, raw=False) if getattr(model, "binary", False) else json.loads(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"undecodable {model.__name__}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{model.__name__} must be an object, got {type(raw).__name__}")
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(f"{model.__name__} schema_version {version} (this code reads {SCHEMA_VERSION})")
    return model.model_validate(raw)
