"""Dense slices are cut finer: when a slice's first page shows the slice would take at least
twice `split_pages` pages, the rest of its window is handed to finer slices of about
`split_pages` pages each (whole UTC hours, at least one hour) that run in parallel (other
accounts, other scraper replicas), and the slice itself ends after that first page. Each
slice costs one extra request at its end (X's empty last page), so parts are kept large:
the extra requests stay under 1/split_pages of the pages.

X's search answers newest first, so after page 0 the slice has every post of its window newer
than the page's oldest post. The children cover [slice start, that post's second + 1 s): a few
posts of that one second may come twice (the dedup-counter keeps a post once per task), none
is missed. The decision uses only what is durable — page 0's oldest post time is on its raw
page and in the slice checkpoint — and child ids derive from the window, so a scraper that
crashes between publishing the children and ending the slice makes the same children again:
the ledger then finds them started or done and X is never asked twice.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, datetime, time, timedelta

from libs.query import x_time
from libs.records.tasks import SearchJob

# A post id is a snowflake: milliseconds since X's epoch in its high bits.
TWEPOCH_MS = 1288834974657
_TWEET_ENTRY = re.compile(rb'"entryId"\s*:\s*"tweet-(\d{1,19})"')
_SINCE = re.compile(r"since:\S+")
_UNTIL = re.compile(r"until:\S+")

CHILD_SPAN = timedelta(hours=1)
MIN_REST = 2 * CHILD_SPAN  # less left than this: not worth cutting


def snowflake_time(post_id: int) -> datetime:
    return datetime.fromtimestamp(((post_id >> 22) + TWEPOCH_MS) / 1000, UTC)


def oldest_post_time(body: str | bytes | None) -> datetime | None:
    """The oldest post of a search page, from its entries' ids (no JSON parse needed)."""
    if not body:
        return None
    raw = body.encode() if isinstance(body, str) else body
    ids = [int(m) for m in _TWEET_ENTRY.findall(raw)]
    return snowflake_time(min(ids)) if ids else None


def can_split(job: SearchJob, split_pages: int) -> bool:
    """Only the scheduler's slices of a search are cut (children are already fine)."""
    return (
        split_pages > 0
        and job.operation == "SearchTimeline"
        and job.parent_slice_id is None
        and job.end_time - job.start_time >= MIN_REST
    )


def rest_pages(job: SearchJob, oldest: datetime) -> float:
    """Pages the rest [start, oldest) needs at the density page 0 showed: page 0 covered
    [oldest, end) with one page."""
    covered = max(1.0, (job.end_time - oldest).total_seconds())
    return (oldest - job.start_time).total_seconds() / covered


def dense(job: SearchJob, oldest: datetime, split_pages: int, page_size: int) -> bool:
    """Worth cutting: the rest needs at least two parts of split_pages pages and spans two
    hours or more. A target a few pages reach is not worth the parallel pages."""
    if oldest - job.start_time < MIN_REST:
        return False
    if job.required_count and job.required_count <= 2 * split_pages * page_size:
        return False
    return rest_pages(job, oldest) >= 2 * split_pages


def children(job: SearchJob, oldest: datetime, split_pages: int) -> list[SearchJob]:
    """Slices of whole UTC hours (about split_pages pages each, at least an hour) for
    [job start, the oldest post's second + 1 s)."""
    until = min(job.end_time, oldest.replace(microsecond=0) + timedelta(seconds=1))
    start = job.start_time
    parts = max(1, math.ceil(rest_pages(job, oldest) / max(1, split_pages)))
    span = CHILD_SPAN * max(1, math.ceil((until - start) / CHILD_SPAN / parts))
    cuts = [start]
    t = datetime.combine(start.date(), time(start.hour), UTC) + span
    while t < until:
        cuts.append(t)
        t += span
    cuts.append(until)
    out = []
    for s, e in itertools.pairwise(cuts):
        q = _UNTIL.sub(f"until:{x_time(e)}", _SINCE.sub(f"since:{x_time(s)}", job.query))
        out.append(
            job.model_copy(
                update={
                    "slice_id": f"{job.slice_id}.h{s:%Y%m%dT%H%M%S}",
                    "query": q,
                    "start_time": s,
                    "end_time": e,
                    "parent_slice_id": job.slice_id,
                }
            )
        )
    return out
