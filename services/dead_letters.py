"""`xget dead-letters list|show|redrive`: look at dead letters and hand them back to their service.

A dead letter (libs/records/dead_letter.py) keeps the original record whole: its value, key,
xget-schema header and xget-body header, and where it came from. `redrive` publishes exactly
that onto its source topic again, so the service that gave up on it consumes it like any new
record: after the cause was fixed (a webhook host allowed, a service upgraded to a schema
version it did not know), the record is processed as if it had never failed.

A webhook report the reporter gave up on is not a topic's record (its batch is kept in
ClickHouse): redriving it asks the reporter to send that batch again (the ReportsReplay of
`xget reports replay`). A dead letter whose source is no topic of the catalogue is refused.

Each dead letter is redriven once: after publishing, a DeadLetterRedrive record keyed by the
dead letter's own position (dead-letters partition/offset) goes to the compacted
dead-letter-redrives topic, and a later redrive skips every dead letter found there. A crash
between the two publishes can re-publish one record on the next redrive; every consumer is
idempotent (as for any re-delivery). A redriven record that fails again is a new dead letter.

Dead letters are identified as PARTITION/OFFSET on the dead-letters topic (the first column
of `list`). `xget reports replay` reads the same topic through dead_letters() below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from libs.kafka import Outgoing, Producer, scan_partition, spec_by_topic
from libs.records.base import BODY_HEADER, SCHEMA_HEADER
from libs.records.dead_letter import DeadLetter, DeadLetterRedrive
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import DEAD_LETTER_REDRIVES, DEAD_LETTERS, partition_count


@dataclass(frozen=True)
class Found:
    """A dead letter and its position on the dead-letters topic."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def id(self) -> str:
        return f"{self.partition}/{self.offset}"


async def dead_letters(
    settings: Settings, *, service: str | None = None, since: datetime | None = None
) -> AsyncIterator[Found]:
    """Every dead letter (of `service`, failed at or after `since`), partition by partition."""
    from services.parser.replay import start_offsets

    since_ms = int(since.timestamp() * 1000) if since else 0
    ranges = await start_offsets(settings, since_ms, DEAD_LETTERS)
    for p, (start, end) in sorted(ranges.items()):
        if start >= end:
            continue
        async for msg, rec in scan_partition(
            settings, DEAD_LETTERS, p, start, end_offset=end, deadline_s=600
        ):
            if not isinstance(rec, DeadLetter):
                continue
            if service is not None and rec.service != service:
                continue
            if since is not None and rec.failed_at < since:
                continue
            yield Found(p, msg.offset, rec)


async def find(settings: Settings, dead_letter_id: str) -> Found | None:
    """The dead letter at PARTITION/OFFSET, or None."""
    p, o = parse_id(dead_letter_id)
    if not 0 <= p < partition_count(DEAD_LETTERS, settings) or o < 0:
        return None
    async for msg, rec in scan_partition(settings, DEAD_LETTERS, p, o, end_offset=o + 1):
        if msg.offset == o and isinstance(rec, DeadLetter):
            return Found(p, o, rec)
    return None


def parse_id(text: str) -> tuple[int, int]:
    try:
        p, o = text.split("/")
        return int(p), int(o)
    except ValueError:
        raise ValueError(f"not a dead letter id (PARTITION/OFFSET): {text!r}") from None


def render_table(found: list[Found]) -> str:
    rows = [("ID", "SERVICE", "SOURCE", "PARTITION/OFFSET", "KEY", "FAILED_AT", "ERROR")]
    for f in found:
        d = f.letter
        rows.append(
            (
                f.id,
                d.service,
                d.source_topic,
                f"{d.partition}/{d.offset}",
                _clip(d.key or "-", 40),
                d.failed_at.isoformat(timespec="seconds"),
                _clip(d.error.replace("\n", " "), 100),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    )


def render_one(f: Found) -> str:
    d = f.letter
    lines = [
        f"id:            {f.id}",
        f"service:       {d.service}",
        f"source:        {d.source_topic} partition {d.partition} offset {d.offset}",
        f"key:           {d.key}",
        f"failed_at:     {d.failed_at.isoformat()}",
        f"error:         {d.error}",
        f"header {SCHEMA_HEADER}: {d.schema_header}",
        f"header {BODY_HEADER}: "
        + ("(none)" if d.body is None else f"{len(d.body.encode())} bytes (below)"),
        "value:",
        d.value,
    ]
    if d.body is not None:
        lines += ["body:", d.body]
    return "\n".join(lines)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass
class RedriveResult:
    redriven: list[tuple[Found, str]]  # with where it went: topic/partition/offset
    skipped: list[Found]  # redriven before
    refused: list[Found]  # its source is no topic of the catalogue


async def redrive(settings: Settings, found: list[Found]) -> RedriveResult:
    """Re-publish each dead letter's original record onto its source topic, once."""
    from services.reporter.replay import is_dead_report, replay_command  # it imports this

    done = TopicTable(settings, DEAD_LETTER_REDRIVES)
    await done.start()
    try:
        await done.wait_caught_up()
    finally:
        await done.stop()
    result = RedriveResult([], [], [])
    topics = spec_by_topic(settings.topic_prefix)
    todo = []
    for f in found:
        if f.id in done.rows:
            result.skipped.append(f)
        elif is_dead_report(f.letter) or f.letter.source_topic in topics:
            todo.append(f)
        else:
            result.refused.append(f)
    if not todo:
        return result
    raw = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        client_id="xget-dead-letters",
    )
    producer = await Producer(settings, "xget-dead-letters", linger_ms=0).start()
    await raw.start()
    try:
        for f in todo:
            d = f.letter
            if is_dead_report(d):
                assert d.key is not None, "a dead report is keyed by its task"
                md = await producer.send_and_wait(replay_command(d.key, d.offset))
            else:
                headers = []
                if d.schema_header is not None:
                    headers.append((SCHEMA_HEADER, d.schema_header.encode()))
                if d.body is not None:
                    headers.append((BODY_HEADER, d.body.encode()))
                md = await raw.send_and_wait(
                    d.source_topic,
                    d.value.encode(),
                    key=d.key.encode() if d.key is not None else None,
                    headers=headers,
                )
            to = f"{md.topic}/{md.partition}/{md.offset}"
            await producer.send_and_wait(
                Outgoing(
                    DEAD_LETTER_REDRIVES,
                    f.id,
                    DeadLetterRedrive(
                        dead_letter=f.id,
                        source=f"{d.source_topic}/{d.partition}/{d.offset}",
                        redriven_to=to,
                        redriven_at=datetime.now(UTC),
                    ),
                )
            )
            result.redriven.append((f, to))
    finally:
        await raw.stop()
        await producer.stop()
    return result
