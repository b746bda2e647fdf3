"""dedup-counter: stores posts and users in ClickHouse and keeps exact per-task progress.

Which posts a task has collected is decided from ClickHouse (`task_posts`): each batch asks it
which of the batch's posts the task already has, and how many the task has is read once per
task and then kept in step with this instance's own writes (see TaskMemo), so a re-delivered
batch makes exactly the same decisions as the first delivery:
  * a post the task already has is stored again (harmless: ReplacingMergeTree) and not counted;
  * a new post is accepted while the task is under its target (0 = no target);
  * past the target, posts of pages that were already in flight are dropped.
Posts of one task arrive in page order (the posts topic is keyed by task), so "the first N
unique posts" is the same set on every replay. Billing rows (keyword, month, post) are written
with the same rows, and counted with uniqExact, so a post counts once per keyword per month.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from libs.kafka import Incoming, Outgoing
from libs.records.pages import SliceEnd
from libs.records.posts import Post, TaskUser, XUser
from libs.records.tasks import TaskProgress
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.post_oss import carried_rows, carry
from libs.storage.post_rows import POST_COLUMNS, post_row
from libs.topics import POSTS_TARGET_HEADER, TASK_PROGRESS

from .declaration import RECORDS

log = logging.getLogger(__name__)

SERVICE = RECORDS.name

USER_COLUMNS = [
    "platform",
    "user_id",
    "user_name",
    "name",
    "avatar",
    "description",
    "created_at",
    "created_at_time",
    "followers",
    "following",
    "statuses_count",
    "verified",
    "blue_verified",
    "protected",
    "location",
    "website",
    "banner_url",
    "seen_at",
    "raw_data",
    "version",
]


def user_row(u: XUser) -> list:
    return [
        int(u.seen_at.timestamp() * 1000) if c == "version" else getattr(u, c) for c in USER_COLUMNS
    ]


TASK_USER_COLUMNS = [
    "task_id",
    "user_id",
    "keyword",
    "relation",
    "subject",
    "rank",
    "retweeted_at",
    "collected_at",
]


def task_user_row(u: TaskUser) -> list:
    return [
        u.task_id,
        u.user_id,
        u.keyword,
        u.relation,
        u.subject,
        u.rank,
        u.retweeted_at,
        u.seen_at,
    ]


def _member_id(rec: Post | TaskUser) -> str:
    """What a task collects once: a post, or (user tasks) a user."""
    return rec.user_id if isinstance(rec, TaskUser) else rec.post_id


def slice_tally(slices: dict[str, tuple[int, str, str | None, int]]) -> tuple[int, bool]:
    """(slices the task has so far, whether every one of them ended).

    The scheduler cut `slice_count` slices; a dense slice may hand the rest of its window to
    `children` finer slices when it ends. Slice ends can arrive in any order across slices (a
    child's before its parent's), so the task is done only when every ended slice's parent has
    ended too and the ends number the scheduler's slices plus every ended slice's children."""
    roots = max([1, *(v[0] for v in slices.values())])
    total = roots + sum(v[3] for v in slices.values())
    parents_ended = all(v[2] is None or v[2] in slices for v in slices.values())
    return total, parents_ended and len(slices) >= total


def month_of(t: datetime):
    return t.astimezone(UTC).date().replace(day=1)


@dataclass
class TaskMemo:
    """What ClickHouse says about one task, kept after this process wrote it.

    The posts topic is keyed by task, so exactly one counter instance writes a task's rows: its
    memo stays equal to `task_posts`/`task_slices` as long as every write it made succeeded.
    It is loaded from ClickHouse on first sight (after a start or a rebalance) and dropped on
    any failure, so a replayed batch is decided from ClickHouse exactly as before.

    It holds how many members the task has, not which: a set of a task's ids grows with the
    task (~100 MiB for 1M posts), so each batch asks ClickHouse which of its own ids the task
    already has instead (`DedupCounter._known`: task_posts and task_users are sorted by task
    and id, so that reads a granule or two per part whatever the task's size).
    """

    collected: int
    # slice_id → (slice_count, end_reason, parent_slice_id, children)
    slices: dict[str, tuple[int, str, str | None, int]]


class DedupCounter:
    MEMO_TASKS = 256  # tasks remembered at most (least recently used evicted)

    def __init__(self, store: ClickHouseStore):
        self.store = store
        self._memos: OrderedDict[str, TaskMemo] = OrderedDict()

    def forget(self, *_args) -> None:
        """Partitions moved (rebalance): another instance may have written since."""
        self._memos.clear()

    async def forget_async(self, *_args) -> None:
        self.forget()

    async def handle(self, batch: list[Incoming]) -> list[Outgoing]:
        by_task: dict[str, list[Incoming]] = defaultdict(list)
        users: dict[str, XUser] = {}
        for inc in batch:
            rec = inc.record
            if isinstance(rec, TaskUser):  # before XUser: a TaskUser is one
                by_task[rec.task_id].append(inc)
            elif isinstance(rec, XUser):
                users[rec.user_id] = rec
            elif isinstance(rec, (Post, SliceEnd)):
                by_task[rec.task_id].append(inc)
        outs: list[Outgoing] = []
        for task_id, items in by_task.items():
            try:
                outs.append(await self._task_batch(task_id, items))
            except BaseException:
                self._memos.pop(task_id, None)  # unknown how far the writes got
                raise
        if users:
            await self.store.insert(
                "users",
                [user_row(u) for u in users.values()],
                USER_COLUMNS,
                dedup=True,
            )
        return outs

    async def _memo(self, task_id: str) -> TaskMemo:
        memo = self._memos.get(task_id)
        if memo is not None:
            self._memos.move_to_end(task_id)
            return memo
        # A task collects posts or users (user tasks: task_users), never both.
        counted = await self.store.query_rows(
            "SELECT count() FROM (SELECT post_id FROM task_posts WHERE task_id = {t:String} "
            "UNION DISTINCT SELECT user_id FROM task_users WHERE task_id = {t:String})",
            {"t": task_id},
        )
        slices = await self.store.query_rows(
            "SELECT slice_id, slice_count, end_reason, parent_slice_id, children "
            "FROM task_slices FINAL WHERE task_id = {t:String}",
            {"t": task_id},
        )
        memo = TaskMemo(int(counted[0][0]), {r[0]: (r[1], r[2], r[3], r[4]) for r in slices})
        self._memos[task_id] = memo
        while len(self._memos) > self.MEMO_TASKS:
            self._memos.popitem(last=False)
        return memo

    async def _known(self, task_id: str, ids: list[str]) -> set[str]:
        """Which of `ids` the task has already collected (posts or, user tasks, users)."""
        if not ids:
            return set()
        rows = await self.store.query_rows(
            "SELECT post_id FROM task_posts WHERE task_id = {t:String} AND post_id IN "
            "{ids:Array(String)} UNION DISTINCT SELECT user_id FROM task_users "
            "WHERE task_id = {t:String} AND user_id IN {ids:Array(String)}",
            {"t": task_id, "ids": ids},
        )
        return {r[0] for r in rows}

    async def _task_batch(self, task_id: str, items: list[Incoming]) -> Outgoing:
        posts = [i for i in items if isinstance(i.record, (Post, TaskUser))]
        ends = [i.record for i in items if isinstance(i.record, SliceEnd)]
        target = self._target(items)
        memo = await self._memo(task_id)
        collected = memo.collected
        known = await self._known(
            task_id, list(dict.fromkeys(_member_id(cast(Post | TaskUser, i.record)) for i in posts))
        )

        members: dict[str, Post | TaskUser] = {}
        new_ids: list[str] = []
        for inc in posts:
            p = cast(Post | TaskUser, inc.record)  # filtered above
            pid = _member_id(p)
            if pid in known or pid in members:
                members.setdefault(pid, p)
            elif target == 0 or collected < target:
                members[pid] = p
                new_ids.append(pid)
                collected += 1
        task_users = [u for u in members.values() if isinstance(u, TaskUser)]
        store = {k: v for k, v in members.items() if isinstance(v, Post)}
        if task_users:
            # The user first, the task's membership last (as for posts below).
            await self.store.insert(
                "users",
                [user_row(u) for u in task_users],
                USER_COLUMNS,
                dedup=True,
            )
            await self.store.insert(
                "task_users",
                [task_user_row(u) for u in task_users],
                TASK_USER_COLUMNS,
                dedup=True,
            )
        if store:
            # A post stored before (another task's, or this one's before a replay) keeps the
            # media oss_urls and batch file its row already shows (counts are not touched).
            prev = await carried_rows(self.store, list(store))
            chosen = [carry(p, prev.get(p.post_id)) for p in store.values()]
            # Posts and billing rows first, the task's membership last: membership is what
            # decides "already counted" on a replay, so it must never run ahead of the data.
            await self.store.insert(
                "posts", [post_row(p) for p in chosen], POST_COLUMNS, dedup=True
            )
            await self.store.insert(
                "keyword_month_posts",
                [
                    [p.keyword, month_of(p.collected_at), p.post_id, p.task_id, p.collected_at]
                    for p in chosen
                ],
                ["keyword", "month", "post_id", "task_id", "collected_at"],
                dedup=True,
            )
            await self.store.insert(
                "task_posts",
                [[task_id, p.post_id, p.keyword, p.collected_at] for p in chosen],
                ["task_id", "post_id", "keyword", "collected_at"],
                dedup=True,
            )
        memo.collected = collected  # every member counted is written now
        now = datetime.now(UTC)
        if ends:
            await self.store.insert(
                "task_slices",
                [
                    [
                        e.task_id,
                        e.slice_id,
                        e.slice_count,
                        e.end_reason,
                        e.pages,
                        now,
                        e.parent_slice_id,
                        e.children,
                    ]
                    for e in ends
                ],
                [
                    "task_id",
                    "slice_id",
                    "slice_count",
                    "end_reason",
                    "pages",
                    "ended_at",
                    "parent_slice_id",
                    "children",
                ],
                dedup=True,
            )
            for e in ends:
                memo.slices[e.slice_id] = (
                    e.slice_count,
                    e.end_reason,
                    e.parent_slice_id,
                    e.children,
                )
        slices_done = len(memo.slices)
        slice_count, all_ended = slice_tally(memo.slices)
        reasons = {v[1] for v in memo.slices.values()}
        first_rec = cast(Post | TaskUser, posts[0].record) if posts else ends[0]
        keyword = first_rec.keyword

        end_reason = None
        if target and collected >= target:
            end_reason = "target_reached"
        elif all_ended:
            end_reason = (
                "cancelled"
                if "cancelled" in reasons
                else "failed"
                if reasons == {"failed"}
                else "exhausted"
            )
        progress = TaskProgress(
            task_id=task_id,
            keyword=keyword,
            status="completed" if end_reason else "running",
            collected=collected,
            target=target,
            slices_done=slices_done,
            slice_count=slice_count,
            slices_failed=sum(1 for v in memo.slices.values() if v[1] == "failed"),
            end_reason=end_reason,
            updated_at=now,
        )
        return Outgoing(TASK_PROGRESS, task_id, progress)

    @staticmethod
    def _target(items: list[Incoming]) -> int:
        for i in items:
            if isinstance(i.record, SliceEnd):
                return i.record.required_count
            raw = i.headers.get(POSTS_TARGET_HEADER)
            if raw is not None:
                return int(raw)
        return 0
