"""Base of every record that travels on a Kafka topic.

A record is a pydantic model with a stable schema name and an integer version. On the wire the
value is JSON (orjson) and the header `xget-schema` says `name/vN`, so a consumer can pick the
right model, refuse a version it does not know (dead letter, never a crash), and a topic may
carry more than one record type in order (e.g. posts and the slice-end marker that follows them).
The Avro-style files in `schemas/` are generated from these models (`python -m libs.records.avro`).
"""

from __future__ import annotations

from typing import ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

SCHEMA_HEADER = "xget-schema"


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)

    schema_name: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @classmethod
    def schema_id(cls) -> str:
        return f"{cls.schema_name}/v{cls.schema_version}"

    def encode(self) -> bytes:
        # pydantic's Rust serializer writes JSON straight from the model (no dict in between).
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def decode(cls, value: bytes):
        # orjson, then validating the dict: a third faster than model_validate_json on records
        # that carry large JSON strings (a raw page, a post's raw_data), whose escapes orjson
        # reads with SIMD. Malformed JSON raises orjson.JSONDecodeError, a ValueError as
        # pydantic's ValidationError is, so callers see the same failure type.
        return cls.model_validate(orjson.loads(value))
