"""The consumer loop's fill bounded by bytes: a service catching up on a backlog (the
dedup-counter at the end of a big task, or after an outage) takes batches of about
`fill_bytes`, not `fill_records` of whatever size, so its memory does not follow its lag."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from infra import local
from infra.service_process import wait_until
from infra.xsim.templates import default_fixtures_dir
from libs.kafka import ConsumerLoop, Incoming, Outgoing, Producer, record_bytes
from libs.parsing import parse_timeline_page
from libs.records.posts import Post
from libs.topics import POSTS

FILL_BYTES = 400_000  # ~35 posts of ~11 KB (record value and the raw JSON header)


async def _batches(env, prefix: str, fill_bytes: int | None, total: int) -> list[list[int]]:
    """The record sizes of each batch one loop handles reading `total` posts from the start."""
    settings = env.settings(topic_prefix=prefix, kafka_max_poll_records=10)
    sizes: list[list[int]] = []
    seen: list[str] = []

    async def handler(batch: list[Incoming]) -> list[Outgoing]:
        sizes.append([record_bytes(i.raw) for i in batch if i.raw is not None])
        seen.extend(i.record.post_id for i in batch if isinstance(i.record, Post))
        return []

    producer = await Producer(settings, "fill-test").start()
    loop = ConsumerLoop(
        settings,
        f"fill-{fill_bytes}",
        [POSTS],
        handler,
        producer,
        fill_ms=3_000,
        fill_records=5_000,
        fill_bytes=fill_bytes,
    )
    runner = asyncio.create_task(loop.run())
    try:
        await asyncio.to_thread(
            wait_until, lambda: len(seen) >= total, 60, f"{total} posts handled, got {len(seen)}"
        )
    finally:
        loop.stop()
        await runner
        await producer.stop()
    assert sorted(seen) == sorted(set(seen)) and len(seen) == total  # each once, none lost
    return sizes


async def test_a_backlog_is_read_in_batches_of_about_fill_bytes(noida):
    prefix = f"fill{uuid.uuid4().hex[:6]}-"
    await local.create_topics(noida.bootstrap, prefix, [POSTS])
    raw = (default_fixtures_dir() / "raw_search.json").read_bytes()
    at = datetime(2026, 11, 20, tzinfo=UTC)
    templates = parse_timeline_page(raw, task_id="t-fill", keyword="k", collected_at=at).posts
    total = 300
    posts = [
        templates[i % len(templates)].model_copy(update={"post_id": str(10**18 + i)})
        for i in range(total)
    ]
    producer = await Producer(noida.settings(topic_prefix=prefix), "fill-test").start()
    try:  # one task: one partition, all of it waiting before the loops start
        await producer.send_all([Outgoing(POSTS, "t-fill", p) for p in posts])
    finally:
        await producer.stop()

    bounded = await _batches(noida, prefix, FILL_BYTES, total)
    largest = max(s for b in bounded for s in b)
    assert all(sum(b) <= FILL_BYTES + largest for b in bounded), [sum(b) for b in bounded]
    # still filled: batches of many fetches (a fetch is 10 records here), not one fetch each
    assert max(len(b) for b in bounded) > 20, [len(b) for b in bounded]

    # The same backlog without the bound: batches of everything at hand, up to fill_records.
    unbounded = await _batches(noida, prefix, None, total)
    assert max(sum(b) for b in unbounded) > 2 * FILL_BYTES, [sum(b) for b in unbounded]
