"""Base of every record that travels on a Kafka topic.

A record is a pydantic model with a stable schema name and an integer version. On the wire the
value is JSON (orjson) and the header `xget-schema` says `name/vN`, so a consumer can pick the
right model, refuse a version it does not know (dead letter, never a crash), and a topic may
carry more than one record type in order (e.g. posts and the slice-end marker that follows them).
The Avro-style files in `schemas/` are generated from these models (`python -m libs.records.avro`).

A record may name one `body_field`: a large verbatim document (X's response to a page, a
post's raw JSON). From version `body_since` on, that field travels as the record's `xget-body`
header, its UTF-8 bytes as they are, instead of as a string inside the JSON value, where each
of its many quotes would be escaped by the producer and unescaped by every consumer (about a
millisecond a page each way, and the broker stores and compresses the escapes too). A model
still reads the versions in `read_versions`, whose records may sit on a topic for weeks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

SCHEMA_HEADER = "xget-schema"
BODY_HEADER = "xget-body"


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)

    schema_name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    # Older versions this model still decodes (a field added with a default, a body moved).
    read_versions: ClassVar[tuple[int, ...]] = ()
    # The str field that travels as the BODY_HEADER from version body_since on (see above).
    body_field: ClassVar[str | None] = None
    body_since: ClassVar[int] = 1
    # Fields a publisher may leave out: filled on intake from the Kafka record itself, so
    # every reader of the record fills the same value (field -> "key" | "timestamp").
    intake_filled: ClassVar[dict[str, str]] = {}

    @classmethod
    def schema_id(cls, version: int | None = None) -> str:
        return f"{cls.schema_name}/v{cls.schema_version if version is None else version}"

    @classmethod
    def versions(cls) -> tuple[int, ...]:
        """The version this model writes, then each older one it still reads."""
        return (cls.schema_version, *cls.read_versions)

    @classmethod
    def schema_ids(cls) -> tuple[str, ...]:
        """The id this model writes, then every id it reads."""
        return tuple(cls.schema_id(v) for v in cls.versions())

    def encode(self) -> bytes:
        """The JSON value; without the body field, which `encode_body()` gives."""
        # pydantic's Rust serializer writes JSON straight from the model (no dict in between).
        if self.body_field is None:
            return self.__pydantic_serializer__.to_json(self)
        return self.__pydantic_serializer__.to_json(self, exclude={self.body_field})

    def encode_body(self) -> bytes | None:
        """The body field's UTF-8 bytes, for the BODY_HEADER; None when there is none."""
        if self.body_field is None:
            return None
        value = getattr(self, self.body_field)
        return None if value is None else value.encode()

    @classmethod
    def decode(
        cls,
        value: bytes,
        body: bytes | None = None,
        *,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
    ):
        """A record from its JSON value and, from body_since on, its BODY_HEADER bytes (a
        record of an older version has the body inside the value). `key` and `timestamp_ms`
        (the Kafka record's) fill the `intake_filled` fields a publisher left out."""
        # orjson, then validating the dict: a third faster than model_validate_json on records
        # that carry large JSON strings, whose escapes orjson reads with SIMD. Malformed JSON
        # raises orjson.JSONDecodeError, and a body that is not UTF-8 UnicodeDecodeError, both
        # ValueErrors as pydantic's ValidationError is, so callers see one failure type.
        data = orjson.loads(value)
        if body is not None and cls.body_field is not None and isinstance(data, dict):
            data[cls.body_field] = body.decode()
        if cls.intake_filled and isinstance(data, dict):
            _fill_on_intake(cls.intake_filled, data, key, timestamp_ms)
        return cls.model_validate(data)


def _fill_on_intake(
    fields: dict[str, str], data: dict, key: bytes | None, timestamp_ms: int | None
) -> None:
    """The fields a publisher left out (absent or null), from the Kafka record: its key, or
    its timestamp (the producer's create time, the same for every consumer of the record)."""
    for name, source in fields.items():
        if data.get(name) is not None:
            continue
        if source == "key" and key is not None:
            data[name] = key.decode(errors="replace")
        elif source == "timestamp" and timestamp_ms is not None and timestamp_ms >= 0:
            data[name] = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
