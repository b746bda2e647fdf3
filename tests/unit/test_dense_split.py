"""Dense slices cut finer: the decision from page 0, the children's windows, and the
dedup-counter's rule for when a task whose slices were cut has ended."""

import itertools
from datetime import UTC, datetime, timedelta

from libs.records.tasks import SearchJob
from services.dedup_counter.handler import slice_tally
from services.scraper import split
from services.task_gateway.scheduler import search_query

D = datetime(2026, 9, 1, tzinfo=UTC)


def job(**kw) -> SearchJob:
    base = dict(
        task_id="t",
        slice_id="d20260901T000000",
        slice_count=2,
        keyword="kw",
        query=search_query("kw", D, D + timedelta(days=1)),
        start_time=D,
        end_time=D + timedelta(days=1),
    )
    return SearchJob(**{**base, **kw})


def test_oldest_post_time_is_the_smallest_snowflake_on_the_page():
    t = datetime(2026, 9, 1, 22, 30, 5, 123000, tzinfo=UTC)
    ms = int(t.timestamp() * 1000) - split.TWEPOCH_MS
    older, newer = (ms << 22) | 5, ((ms + 60_000) << 22) | 7
    body = (
        f'{{"entries":[{{"entryId": "tweet-{newer}"}},{{"entryId":"tweet-{older}"}},'
        '{"entryId":"cursor-bottom-0"}]}'
    )
    assert split.oldest_post_time(body) == t
    assert split.oldest_post_time('{"entries":[]}') is None


def test_dense_only_when_the_rest_needs_two_parts_or_more():
    j = job()
    # page 0 reached back 10 minutes of a 24 h slice: 143 more pages at that density
    assert split.dense(j, j.end_time - timedelta(minutes=10), 50, 20)
    # 20 minutes back: 71 more pages, fewer than two parts of 50
    assert not split.dense(j, j.end_time - timedelta(minutes=20), 50, 20)
    assert split.dense(j, j.end_time - timedelta(minutes=20), 20, 20)
    # a target a few pages reach is not worth parallel pages
    assert not split.dense(job(required_count=500), j.end_time - timedelta(minutes=10), 50, 20)
    assert split.can_split(j, 50) and not split.can_split(j, 0)
    kid = split.children(j, j.end_time - timedelta(minutes=10), 50)[0]
    assert not split.can_split(kid, 50), "children are not cut again"
    assert not split.can_split(job(end_time=D + timedelta(hours=1)), 50)


def test_children_cover_the_rest_in_whole_hours_of_about_split_pages_each():
    j = job()
    oldest = datetime(2026, 9, 1, 23, 50, 0, 400000, tzinfo=UTC)  # 143 pages left
    until = oldest.replace(microsecond=0) + timedelta(seconds=1)
    big = split.children(j, oldest, 50)  # 3 parts of ~48 pages: 8 h each
    assert [(k.start_time, k.end_time) for k in big] == [
        (D, D + timedelta(hours=8)),
        (D + timedelta(hours=8), D + timedelta(hours=16)),
        (D + timedelta(hours=16), until),
    ]
    kids = split.children(j, oldest, 5)  # 29 parts wanted; an hour at least: 24
    assert len(kids) == 24
    assert kids[0].start_time == D and kids[-1].end_time == until
    for a, b in itertools.pairwise(kids):
        assert a.end_time == b.start_time and b.start_time.minute == 0
    assert kids[3].query == search_query("kw", D + timedelta(hours=3), D + timedelta(hours=4))
    assert {k.parent_slice_id for k in kids} == {j.slice_id}
    assert len({k.slice_id for k in kids}) == 24
    assert split.children(j, oldest, 5) == kids, "same children when decided again (a restart)"


def test_a_task_with_cut_slices_ends_only_when_every_slice_ended():
    # two scheduler slices; A hands its rest to 2 children
    ends = {"A": (2, "exhausted", None, 2)}
    assert slice_tally(ends) == (4, False)
    ends["A.h1"] = (2, "exhausted", "A", 0)
    ends["B"] = (2, "exhausted", None, 0)
    assert slice_tally(ends) == (4, False)
    ends["A.h2"] = (2, "exhausted", "A", 0)
    assert slice_tally(ends) == (4, True)
    # a child's end arriving before its parent's does not complete the task
    early = {"A.h1": (1, "exhausted", "A", 0)}
    assert slice_tally(early) == (1, False)
    assert slice_tally({"A": (1, "exhausted", None, 0)}) == (1, True)
