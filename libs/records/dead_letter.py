"""A record a service could not handle, with the cause; the consumer keeps going."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .base import Record


class DeadLetter(Record):
    schema_name = "xget.DeadLetter"

    service: str = Field(description="Service that gave up on the record.")
    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    value: str = Field(description="The original value, UTF-8 (invalid bytes replaced).")
    schema_header: str | None = Field(None, description="The original xget-schema header.")
    body: str | None = Field(
        None,
        description="The original xget-body header, UTF-8 (invalid "
        "bytes replaced); the record's large document.",
    )
    error: str = Field(description="Why it could not be handled.")
    failed_at: datetime


class DeadLetterRedrive(Record):
    """A dead letter `xget dead-letters redrive` re-published onto its source topic (latest per
    dead letter on a compacted topic, keyed by the dead letter's own coordinates): a second
    redrive of the same dead letter finds it and publishes nothing."""

    schema_name = "xget.DeadLetterRedrive"

    dead_letter: str = Field(description="dead-letters partition/offset of the dead letter.")
    source: str = Field(description="topic/partition/offset of the original record.")
    redriven_to: str = Field(description="topic/partition/offset of the re-published copy.")
    redriven_at: datetime
