"""Topic tables share one consumer per process: every view still reads its topic from the
beginning, in order, each record once, also when it joins a topic another view already follows
while records keep coming."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from libs.kafka import Outgoing, Producer
from libs.records.tasks import TaskControl
from libs.topic_table import TopicTable
from libs.topics import TASK_CONTROLS, TASK_PROGRESS


def control(task_id: str, n: int) -> TaskControl:
    """Control records whose priority counts up: the order a view saw them in is visible."""
    return TaskControl(
        task_id=task_id,
        state="active",
        priority=1 + n % 10,
        reason=f"n={n}",
        updated_at=datetime.now(UTC),
    )


def seen(log: list, task_id: str) -> list[int]:
    return [int(r.reason.split("=")[1]) for k, r in log if k == task_id]


async def test_views_share_one_consumer_and_a_late_view_reads_from_the_start(noida):
    settings = noida.settings()
    producer = await Producer(settings).start()
    first_log: list = []
    first = await TopicTable(settings, TASK_CONTROLS, lambda k, r: first_log.append((k, r))).start()
    other = await TopicTable(settings, TASK_PROGRESS).start()
    late = None
    try:
        for n in range(30):
            await producer.send_and_wait(Outgoing(TASK_CONTROLS, "t-a", control("t-a", n)))
        await first.wait_caught_up(30)
        assert await first.wait_for(
            lambda: "t-a" in first.rows and first.rows["t-a"].reason == "n=29", 30
        )

        # A second view of the same topic joins while records keep coming.
        async def keep_writing():
            for n in range(30, 90):
                await producer.send_and_wait(Outgoing(TASK_CONTROLS, "t-a", control("t-a", n)))

        writer = asyncio.create_task(keep_writing())
        late_log: list = []
        late = await TopicTable(
            settings, TASK_CONTROLS, lambda k, r: late_log.append((k, r))
        ).start()
        await writer
        for view in (first, late):
            assert await view.wait_for(lambda v=view: v.rows["t-a"].reason == "n=89", 30)

        # One consumer behind all three views.
        assert first._feed is late._feed is other._feed
        # Each view saw every record of the key once, in order, from the first on: the feed
        # went back to the start for the late view without replaying anything to the first.
        assert seen(first_log, "t-a") == list(range(90))
        assert seen(late_log, "t-a") == list(range(90))
        await late.wait_caught_up(30)
        await other.wait_caught_up(30)
    finally:
        for view in (first, other, late):
            if view is not None:
                await view.stop()
        await producer.stop()


async def test_the_feed_closes_with_its_last_view_and_a_new_view_starts_a_new_one(noida):
    settings = noida.settings()
    producer = await Producer(settings).start()
    try:
        await producer.send_and_wait(Outgoing(TASK_CONTROLS, "t-b", control("t-b", 1)))
        view = await TopicTable(settings, TASK_CONTROLS).start()
        feed = view._feed
        assert await view.wait_for(lambda: "t-b" in view.rows, 30)
        await view.stop()
        assert feed.closed and feed._consumer is None

        again = await TopicTable(settings, TASK_CONTROLS).start()
        try:
            assert again._feed is not feed
            assert await again.wait_for(lambda: "t-b" in again.rows, 30)
        finally:
            await again.stop()
    finally:
        await producer.stop()


async def test_a_view_of_a_missing_topic_fails_to_start_and_the_others_go_on(noida):
    settings = noida.settings()
    producer = await Producer(settings).start()
    view = await TopicTable(settings, TASK_CONTROLS).start()
    try:
        missing = TopicTable(
            settings.model_copy(update={"topic_prefix": "no-such-prefix-"}), TASK_CONTROLS
        )
        try:
            await missing.start()
        except RuntimeError as e:
            assert "does not exist" in str(e)
        else:
            raise AssertionError("a view of a missing topic started")
        await producer.send_and_wait(Outgoing(TASK_CONTROLS, "t-c", control("t-c", 3)))
        assert await view.wait_for(lambda: "t-c" in view.rows, 30)
    finally:
        await view.stop()
        await producer.stop()


async def test_views_stopped_one_after_the_other_close_the_consumer(noida):
    """Stopping one view re-assigns the shared consumer; stopping the last one right after
    closes it (aiokafka's fetcher could swallow that close's cancel and hang consumer.stop()).
    With the empty-fetch wait on, as against noida-db, a fetch is pending at each change."""
    settings = noida.settings(kafka_empty_fetch_backoff_ms=50)
    producer = await Producer(settings).start()
    try:
        for n in range(5):
            await producer.send_and_wait(Outgoing(TASK_CONTROLS, f"t-d{n}", control("t-d", n)))
        for _ in range(5):
            views = [
                await TopicTable(settings, spec).start() for spec in (TASK_CONTROLS, TASK_PROGRESS)
            ]
            for v in views:
                await v.wait_caught_up(30)
            feed = views[0]._feed
            for v in views:
                stopping = asyncio.ensure_future(v.stop())
                done, _ = await asyncio.wait({stopping}, timeout=20)
                assert done, "stopping a view hung"
            assert feed.closed and feed._consumer is None
    finally:
        await producer.stop()


async def test_a_failing_hook_of_one_view_stops_no_view(noida):
    settings = noida.settings()
    producer = await Producer(settings).start()

    def broken(_key, _rec):
        raise ValueError("a bug in one view's hook")

    bad = await TopicTable(settings, TASK_CONTROLS, broken).start()
    good_log: list = []
    good = await TopicTable(settings, TASK_PROGRESS).start()
    also = await TopicTable(settings, TASK_CONTROLS, lambda k, r: good_log.append((k, r))).start()
    try:
        for n in range(3):
            await producer.send_and_wait(Outgoing(TASK_CONTROLS, "t-e", control("t-e", n)))
        for view in (bad, also):
            assert await view.wait_for(
                lambda v=view: "t-e" in v.rows and v.rows["t-e"].reason == "n=2", 30
            )
        assert seen(good_log, "t-e") == [0, 1, 2]
    finally:
        for view in (bad, good, also):
            await view.stop()
        await producer.stop()
