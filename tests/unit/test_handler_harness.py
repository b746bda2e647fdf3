"""Service handlers driven through libs/handler_harness.py: no broker, the real decoding,
batching and dead-lettering of the consumer loop, the real ClickHouse engine (chdb) where the
handler stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.handler_harness import HandlerHarness
from libs.records.pages import RawPage, SliceEnd
from libs.records.posts import MediaJob, Post, XUser
from libs.records.tasks import TaskProgress
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.migrate import apply_migrations
from libs.topics import (
    DEAD_LETTERS,
    MEDIA_JOBS,
    POSTS,
    POSTS_TARGET_HEADER,
    RAW_PAGES,
    TASK_PROGRESS,
    USERS,
)
from services.dedup_counter.declaration import RECORDS
from services.dedup_counter.handler import DedupCounter
from services.parser.declaration import PAGES
from services.parser.handler import PageHandler

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "x"
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def raw_page(response: str | None, *, page_no: int = 0, final: bool = False, **kw) -> RawPage:
    fields = {
        "task_id": "t1",
        "slice_id": "s0",
        "page_no": page_no,
        "keyword": "tesla",
        "operation": "SearchTimeline",
        "query": "tesla",
        "requested_at": AT,
        "response": response,
        "final": final,
        "end_reason": "exhausted" if final else None,
        "required_count": 0,
        **kw,
    }
    return RawPage(**fields)


# --- parser -------------------------------------------------------------------------------------
async def test_parser_turns_a_real_page_into_posts_users_and_media_jobs():
    h = HandlerHarness(PAGES, PageHandler(user_resend_s=0))
    page = raw_page((FIXTURES / "raw_search.json").read_text(), final=True)
    out = await h.feed(h.record(RAW_PAGES, page, key="t1"))
    posts = [r for r in out.on(POSTS) if isinstance(r, Post)]
    assert posts and all(p.task_id == "t1" and p.keyword == "tesla" for p in posts)
    assert out.on(USERS) and all(isinstance(u, XUser) for u in out.on(USERS))
    assert out.on(MEDIA_JOBS) and all(isinstance(j, MediaJob) for j in out.on(MEDIA_JOBS))
    # The slice's end comes after its last post, on the same (task-keyed) topic.
    assert isinstance(out.on(POSTS)[-1], SliceEnd)
    assert out.dead_letters == []


async def test_an_unparsable_page_is_dead_lettered_with_its_cause_and_its_slice_still_ends():
    h = HandlerHarness(PAGES, PageHandler(user_resend_s=0))
    good = raw_page((FIXTURES / "raw_search.json").read_text(), page_no=0)
    bad = raw_page('{"data": {"search_by_raw_query": 7}}', page_no=1, final=True)
    out = await h.feed(h.record(RAW_PAGES, good, key="t1"), h.record(RAW_PAGES, bad, key="t1"))
    (dl,) = out.dead_letters
    assert dl.service == "parser" and dl.offset == 1
    assert dl.error.startswith("page 1 of t1/s0 unparsable:"), dl.error
    # The good page's posts are not lost with the bad one, and the slice is closed.
    assert any(isinstance(r, Post) for r in out.on(POSTS))
    ends = [r for r in out.on(POSTS) if isinstance(r, SliceEnd)]
    assert [(e.slice_id, e.pages) for e in ends] == [("s0", 2)]


async def test_a_record_no_model_can_read_is_dead_lettered_not_handled():
    h = HandlerHarness(PAGES, PageHandler(user_resend_s=0))
    out = await h.feed(
        h.raw(RAW_PAGES, b'{"task_id": 1}', [("xget-schema", b"xget.RawPage/v99")], key="t1"),
        h.raw(RAW_PAGES, b"not json", [("xget-schema", RawPage.schema_id().encode())], key="t1"),
    )
    assert out.published == []
    causes = [d.error for d in out.dead_letters]
    assert len(causes) == 2 and all(c.startswith("undecodable record:") for c in causes)
    assert "unknown schema" in causes[0]
    assert "unknown schema" not in causes[1]  # a known schema whose value is not JSON


# --- dedup-counter ------------------------------------------------------------------------------
@pytest.fixture
def store(chdb_path):
    s = ClickHouseStore(f"chdb://{chdb_path}")
    apply_migrations(s)
    yield s
    s.close()


def page_posts(task_id: str) -> list[Post]:
    from libs.parsing import parse_timeline_page

    page = parse_timeline_page(
        (FIXTURES / "raw_search.json").read_bytes(),
        task_id=task_id,
        keyword="tesla",
        collected_at=AT,
    )
    return page.posts


def counted(store: ClickHouseStore, task_id: str) -> int:
    return store.query_rows_sync(
        "SELECT uniqExact(post_id) FROM task_posts WHERE task_id = {t:String}", {"t": task_id}
    )[0][0]


async def test_counter_accepts_the_first_n_unique_posts_and_a_redelivery_decides_the_same(store):
    task = f"t-{uuid.uuid4().hex[:6]}"
    posts = page_posts(task)
    assert len(posts) >= 5
    target = 3
    hdr = [(POSTS_TARGET_HEADER, str(target).encode())]
    h = HandlerHarness(RECORDS, DedupCounter(store).handle)
    # A duplicate inside the batch (X repeats posts across pages) and more than the target.
    batch = [h.record(POSTS, p, key=task, headers=hdr) for p in [posts[0], *posts[:5]]]
    out = await h.feed(*batch)
    (progress,) = out.on(TASK_PROGRESS)
    assert isinstance(progress, TaskProgress)
    assert (progress.task_id, progress.collected) == (task, target)
    assert counted(store, task) == target
    # The same records again (a crash before the commit): the same decision, no double count.
    again = HandlerHarness(RECORDS, DedupCounter(store).handle)
    out2 = await again.feed(*[again.record(POSTS, p, key=task, headers=hdr) for p in posts[:5]])
    assert [p.collected for p in out2.on(TASK_PROGRESS)] == [target]
    assert counted(store, task) == target
    assert out.dead_letters == out2.dead_letters == []


async def test_counter_without_a_target_keeps_every_unique_post_once(store):
    task = f"t-{uuid.uuid4().hex[:6]}"
    posts = page_posts(task)
    h = HandlerHarness(RECORDS, DedupCounter(store).handle)
    hdr = [(POSTS_TARGET_HEADER, b"0")]
    await h.feed(*[h.record(POSTS, p, key=task, headers=hdr) for p in posts])
    out = await h.feed(*[h.record(POSTS, p, key=task, headers=hdr) for p in posts[:2]])
    assert [p.collected for p in out.on(TASK_PROGRESS)] == [len({p.post_id for p in posts})]
    assert counted(store, task) == len({p.post_id for p in posts})


async def test_other_posts_at_offsets_a_restarted_broker_gave_anew_are_stored_and_counted(store):
    """A broker restored from an older snapshot hands out offsets it had already given: the
    records at those offsets are now other posts. They are stored and counted, not taken for
    a retry of the batch that had those offsets before (and silently dropped), so the task's
    count, its stored posts and the keyword's billing rows stay equal."""
    task = f"t-{uuid.uuid4().hex[:6]}"
    posts = page_posts(task)
    assert len(posts) >= 6
    hdr = [(POSTS_TARGET_HEADER, b"0")]
    counter = DedupCounter(store)  # the same process before and after the broker's restart
    before = HandlerHarness(RECORDS, counter.handle)
    await before.feed(*[before.record(POSTS, p, key=task, headers=hdr) for p in posts[:3]])
    after = HandlerHarness(RECORDS, counter.handle)  # offsets from 0 again
    out = await after.feed(*[after.record(POSTS, p, key=task, headers=hdr) for p in posts[3:6]])
    ids = {p.post_id for p in posts[:6]}
    assert [p.collected for p in out.on(TASK_PROGRESS)] == [len(ids)]
    assert counted(store, task) == len(ids)
    stored = store.query_rows_sync(
        "SELECT uniqExact(post_id) FROM posts WHERE task_id = {t:String}", {"t": task}
    )[0][0]
    billed = store.query_rows_sync(
        "SELECT uniqExact(post_id) FROM keyword_month_posts WHERE task_id = {t:String}",
        {"t": task},
    )[0][0]
    assert stored == billed == len(ids)


async def test_other_users_at_offsets_a_restarted_broker_gave_anew_are_stored(store):
    counter = DedupCounter(store)
    tag = uuid.uuid4().hex[:6]

    def user(n: int) -> XUser:
        return XUser(user_id=f"{tag}{n}", user_name=f"u{tag}{n}", seen_at=AT)

    before = HandlerHarness(RECORDS, counter.handle)
    await before.feed(*[before.record(USERS, user(n), key=user(n).user_id) for n in (1, 2)])
    after = HandlerHarness(RECORDS, counter.handle)  # offsets from 0 again
    await after.feed(*[after.record(USERS, user(n), key=user(n).user_id) for n in (3, 4)])
    rows = store.query_rows_sync(
        "SELECT user_id FROM users FINAL WHERE startsWith(user_id, {t:String}) ORDER BY user_id",
        {"t": tag},
    )
    assert [r[0] for r in rows] == [f"{tag}{n}" for n in (1, 2, 3, 4)]


async def test_each_x_request_is_metered_once_even_at_offsets_a_restarted_broker_gave_anew(
    store,
):
    """A task's actual cost counts its X requests: the same events handled again count once,
    other requests at offsets a restored broker gave anew count too (before, they were merged
    away with the earlier request at that offset), and an event of an older scraper without an
    id is still counted by its place."""
    from libs.leases import event_for
    from libs.records.accounts import AccountEvent
    from libs.topics import ACCOUNT_EVENTS
    from services.dedup_counter.declaration import USAGE
    from services.dedup_counter.usage import UsageMeter
    from services.task_gateway.cost_api import spent

    task = f"t-{uuid.uuid4().hex[:6]}"

    def request(op: str) -> AccountEvent:
        return event_for("acc1", op, None, "lease1", "scraper-1", None, task_id=task)

    meter = UsageMeter(store)
    first = [request("SearchTimeline"), request("SearchTimeline")]
    before = HandlerHarness(USAGE, meter.handle)
    await before.feed(*[before.record(ACCOUNT_EVENTS, e, key="acc1") for e in first])
    again = HandlerHarness(USAGE, meter.handle)  # a crash before the commit: the same records
    await again.feed(*[again.record(ACCOUNT_EVENTS, e, key="acc1") for e in first])
    assert (await spent(store, [task]))[0] == {"SearchTimeline": 2}
    # The broker came back from an older snapshot: other requests at offsets 0 and 1 again.
    after = HandlerHarness(USAGE, meter.handle)
    later = [request("SearchTimeline"), request("UserByScreenName")]
    await after.feed(*[after.record(ACCOUNT_EVENTS, e, key="acc1") for e in later])
    await store.command("OPTIMIZE TABLE task_x_requests FINAL")  # what a merge would collapse
    assert (await spent(store, [task]))[0] == {"SearchTimeline": 3, "UserByScreenName": 1}
    # An older scraper's event (no id) is metered once by its place, delivered twice.
    old = request("SearchTimeline").model_copy(update={"event_id": ""})
    m = after.record(ACCOUNT_EVENTS, old, key="acc1")
    await after.feed(m)
    await after.feed(m)
    assert (await spent(store, [task]))[0] == {"SearchTimeline": 4, "UserByScreenName": 1}


# --- reporter -----------------------------------------------------------------------------------
async def test_reporter_cuts_a_completed_task_into_batches_each_post_reported_once(
    store, tmp_path, make_settings
):
    """The reporter's handler learns of a task and its completion; its task worker cuts the
    stored posts into batches of report_batch_size and delivers each to the client's webhook
    (a real HTTP server), the last one marked completed."""
    import math

    import httpx
    from aiokafka import TopicPartition

    from libs.handler_harness import MemoryProducer
    from libs.records.tasks import OnDemandTask
    from libs.storage.objects import FileObjectStore
    from libs.topics import TASK_COMMANDS
    from libs.webhooks import WebhookSender
    from services.reporter.declaration import TASKS
    from services.reporter.service import Reporter
    from services.reporter.store import ReportStore
    from tests.webhook_server import WebhookServer

    task = f"t-{uuid.uuid4().hex[:6]}"
    counter = HandlerHarness(RECORDS, DedupCounter(store).handle)
    posts = page_posts(task)
    hdr = [(POSTS_TARGET_HEADER, b"0")]
    (progress,) = (
        await counter.feed(*[counter.record(POSTS, p, key=task, headers=hdr) for p in posts])
    ).on(TASK_PROGRESS)
    n = progress.collected
    settings = make_settings(
        report_batch_size=4,
        report_media_wait_s=0,
        report_tick_s=0.05,
        webhook_allow_hosts="127.0.0.1",
    )
    with WebhookServer(settings.webhook_secret.get_secret_value()) as hook:
        async with httpx.AsyncClient() as http:
            sender = WebhookSender(
                http, settings.webhook_secret.get_secret_value(), allow_hosts="127.0.0.1"
            )
            producer = MemoryProducer()
            reporter = Reporter(
                settings,
                ReportStore(store),
                FileObjectStore(tmp_path / "objects"),
                sender,
                producer,  # type: ignore[arg-type]
            )
            await reporter.on_assign(
                {TopicPartition(f"{settings.topic_prefix}task-progress", p) for p in range(12)}
            )
            h = HandlerHarness(TASKS, reporter.handle)
            command = OnDemandTask(
                task_id=task,
                keyword="tesla",
                required_count=0,
                start_time=AT.replace(day=1),
                end_time=AT,
                callback_url=hook.url,
                submitted_at=AT,
            )
            done = progress.model_copy(update={"status": "completed", "end_reason": "exhausted"})
            out = await h.feed(
                h.record(TASK_COMMANDS, command, key=task), h.record(TASK_PROGRESS, done, key=task)
            )
            assert out.outputs == []  # the handler only records state; workers deliver
            batches = math.ceil(n / 4)
            await asyncio_wait(lambda: len(hook.accepted()) >= batches, 30, "every batch")
            await reporter.close()
    bodies = [r.body for r in hook.accepted()]
    assert len(bodies) == batches and all(r.signature_ok for r in hook.accepted())
    reported = [i for b in bodies for i in b["post_ids"]]
    assert sorted(reported) == sorted({p.post_id for p in posts})  # each post exactly once
    assert all(len(b["post_ids"]) <= 4 for b in bodies)
    assert [b.get("completion_status") for b in bodies][-1] == "completed"
    assert producer.on(DEAD_LETTERS) == []


async def test_reports_waiting_for_posts_that_were_never_stored_say_so_once(
    store, tmp_path, make_settings, caplog
):
    """Should progress ever count posts that are not stored, the task's reports cannot finish:
    the reporter cuts what is stored, then warns once (not per tick) why it waits."""
    import asyncio
    import logging

    from libs.handler_harness import MemoryProducer
    from libs.storage.objects import FileObjectStore
    from services.reporter.store import ReportStore, TaskState
    from services.reporter.task_reporter import TaskReporter

    task = f"t-{uuid.uuid4().hex[:6]}"
    counter = HandlerHarness(RECORDS, DedupCounter(store).handle)
    posts = page_posts(task)
    hdr = [(POSTS_TARGET_HEADER, b"0")]
    await counter.feed(*[counter.record(POSTS, p, key=task, headers=hdr) for p in posts])
    stored = counted(store, task)
    state = TaskState(task, "tesla", status="completed", collected=stored + 2)
    settings = make_settings(report_batch_size=1000, report_media_wait_s=0)
    w = TaskReporter(
        state,
        ReportStore(store),
        FileObjectStore(tmp_path / "objects"),
        None,  # type: ignore[arg-type] - no webhook is called: nothing is due
        MemoryProducer(),  # type: ignore[arg-type]
        settings,
        asyncio.Event(),
    )
    await w.load()
    with caplog.at_level(logging.WARNING, logger="services.reporter.task_reporter"):
        assert await w.step()  # the stored posts are cut into a batch
        w.batches[0].state = "delivered"
        assert not await w.step() and not await w.step()
    assert w.reported == stored and not w.finished()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"task {task}: progress counts {stored + 2} collected, {stored} reported, but no "
        "unreported post of it is stored; its reports wait for them"
    ]


async def asyncio_wait(cond, timeout_s: float, what: str) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_memory_log_answers_as_the_broker_and_views_read_it_back():
    """What MemoryProducer writes lands where the real Producer would put it (Kafka's key
    partitioner, offsets from 0 per partition), and a view reads it back decoded, latest per
    key, waking a waiter when it arrives."""
    from libs.handler_harness import MemoryLog, MemoryProducer, MemoryTable
    from libs.kafka import Outgoing, partition_for_key

    log = MemoryLog()
    producer = MemoryProducer(log)
    table = MemoryTable(log, TASK_PROGRESS)

    def progress(task_id: str, collected: int) -> Outgoing:
        p = TaskProgress(
            task_id=task_id,
            keyword="k",
            status="running",
            collected=collected,
            target=10,
            updated_at=AT,
        )
        return Outgoing(TASK_PROGRESS, task_id, p)

    parts = sorted(await producer.partitions_for(TASK_PROGRESS.name))
    assert parts == list(range(TASK_PROGRESS.partitions))
    mds = [await producer.send_and_wait(progress("t1", n)) for n in (1, 2)]
    at = partition_for_key("t1", parts)
    assert [(m.topic, m.partition, m.offset) for m in mds] == [
        (TASK_PROGRESS.name, at, 0),
        (TASK_PROGRESS.name, at, 1),
    ]
    assert log.end(TASK_PROGRESS, at) == 2
    row = table.rows["t1"]
    assert isinstance(row, TaskProgress) and row.collected == 2
    assert not await table.wait_for(lambda: "t2" in table.rows, 0.05)
    await producer.send_and_wait(progress("t2", 5))
    assert await table.wait_for(lambda: "t2" in table.rows, 1.0)
    assert sorted(r.collected for r in log.read(TASK_PROGRESS) if isinstance(r, TaskProgress)) == [
        1,
        2,
        5,
    ]
