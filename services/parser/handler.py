"""parser: raw X pages → standard post records, users and media jobs.

Posts go out in page order, keyed by task, each slice closed by a SliceEnd after its last
post, so the dedup-counter sees a slice's end only after all of its posts. A page that cannot
be parsed is dead-lettered with the cause; its slice still ends.
"""

from __future__ import annotations

import logging

from libs.kafka import Incoming, Outgoing
from libs.parsing import PageParseError, parse_timeline_page
from libs.records.pages import RawPage, SliceEnd
from libs.storage.raw_archive import RawArchive
from libs.topics import MEDIA_JOBS, POSTS, POSTS_TARGET_HEADER, USERS

from .declaration import PAGES
from .recent_users import RecentUsers
from .user_pages import is_user_page, task_users, user_outgoing

log = logging.getLogger(__name__)

SERVICE = PAGES.name


def parse_raw_page(inc: Incoming, recent: RecentUsers | None = None) -> list[Outgoing]:
    page = inc.record
    assert isinstance(page, RawPage)
    outs: list[Outgoing] = []
    if page.response is not None and page.outcome == "ok" and is_user_page(page):
        try:
            outs.extend(user_outgoing(page, task_users(page)))
        except PageParseError as e:
            outs.append(
                inc.dead_letter(
                    SERVICE,
                    f"page {page.page_no} of {page.task_id}/{page.slice_id} unparsable: {e}",
                )
            )
    elif page.response is not None and page.outcome == "ok" and page.operation == "SearchTimeline":
        try:
            parsed = parse_timeline_page(
                page.response,
                task_id=page.task_id,
                keyword=page.keyword,
                collected_at=page.requested_at,
                publish_user=None if recent is None else recent.should_publish,
            )
        except PageParseError as e:
            outs.append(
                inc.dead_letter(
                    SERVICE,
                    f"page {page.page_no} of {page.task_id}/{page.slice_id} unparsable: {e}",
                )
            )
        else:
            hdr = ((POSTS_TARGET_HEADER, str(page.required_count).encode()),)
            outs.extend(Outgoing(POSTS, page.task_id, p, hdr) for p in parsed.posts)
            outs.extend(Outgoing(USERS, u.user_id, u) for u in parsed.users)
            for j in parsed.media_jobs:
                if not page.download_video:
                    j.video_url = None  # the cover is stored always, the video only when asked
                outs.append(Outgoing(MEDIA_JOBS, j.original_url, j))
            for reason in parsed.skipped:
                log.info(
                    "page %s/%s#%d: skipped %s", page.task_id, page.slice_id, page.page_no, reason
                )
    if page.final:
        outs.append(
            Outgoing(
                POSTS,
                page.task_id,
                SliceEnd(
                    task_id=page.task_id,
                    slice_id=page.slice_id,
                    slice_count=page.slice_count,
                    keyword=page.keyword,
                    end_reason=page.end_reason or "exhausted",
                    required_count=page.required_count,
                    pages=page.page_no + 1,
                    parent_slice_id=page.parent_slice_id,
                    children=page.children,
                ),
            )
        )
    return outs


def parse_batch(batch: list[Incoming], recent: RecentUsers | None = None) -> list[Outgoing]:
    outs: list[Outgoing] = []
    for inc in batch:
        outs.extend(parse_raw_page(inc, recent))
    return outs


async def handle(batch: list[Incoming]) -> list[Outgoing]:
    """Every user as met (replay re-derives all of them)."""
    return parse_batch(batch)


class PageHandler:
    """The parser service's handler: archives the batch's raw pages to the object store
    (libs/storage/raw_archive.py) before anything else — the consumer loop commits the batch's
    offsets only after this returns, so a page counts as done only once archived (a store that
    is down is waited out, the batch handled again) — then parses them, publishing an
    unchanged user at most every `resend_s`."""

    def __init__(self, user_resend_s: float, archive: RawArchive | None = None):
        self.recent = RecentUsers(user_resend_s)
        self.archive = archive

    async def __call__(self, batch: list[Incoming]) -> list[Outgoing]:
        if self.archive is not None:
            await self.archive.archive(batch)
        return parse_batch(batch, self.recent)
