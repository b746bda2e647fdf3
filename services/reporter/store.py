"""The reporter's durable state in ClickHouse: tasks, batches (membership before delivery) and
the media results it fills into batch files. Every write is a new row version; reads use FINAL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from libs.records.posts import Post
from libs.storage import post_oss
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.post_rows import SELECT_POST, post_from_row

TASK_COLUMNS = [
    "task_id",
    "keyword",
    "callback_url",
    "status",
    "end_reason",
    "collected",
    "target",
    "created_at",
    "completed_at",
    "updated_at",
    "version",
]
BATCH_COLUMNS = [
    "task_id",
    "batch_no",
    "batch_id",
    "keyword",
    "post_ids",
    "oss_file_path",
    "completion_status",
    "total_collected",
    "state",
    "attempts",
    "last_error",
    "created_at",
    "delivered_at",
    "version",
]


def _version() -> int:
    # Microseconds since the epoch: later writes of a row win, even within one millisecond.
    return time.time_ns() // 1000


def _utc(t: datetime | None) -> datetime | None:
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t


@dataclass
class TaskState:
    task_id: str
    keyword: str
    callback_url: str | None = None
    status: str = "running"
    end_reason: str | None = None
    collected: int = 0
    target: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    completed_at: datetime | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The W3C trace context of the task's latest record (in memory only): its webhook
    # deliveries join the task's trace.
    trace: tuple[tuple[str, bytes], ...] = field(default=(), compare=False, repr=False)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def row(self) -> list:
        return [
            self.task_id,
            self.keyword,
            self.callback_url,
            self.status,
            self.end_reason,
            self.collected,
            self.target,
            self.created_at,
            self.completed_at,
            self.updated_at,
            _version(),
        ]


@dataclass
class Batch:
    task_id: str
    batch_no: int
    keyword: str
    post_ids: list[str]
    oss_file_path: str
    completion_status: str
    total_collected: int
    state: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    delivered_at: datetime | None = None

    @property
    def batch_id(self) -> str:
        return batch_id(self.task_id, self.batch_no)

    def row(self) -> list:
        return [
            self.task_id,
            self.batch_no,
            self.batch_id,
            self.keyword,
            self.post_ids,
            self.oss_file_path,
            self.completion_status,
            self.total_collected,
            self.state,
            self.attempts,
            self.last_error,
            self.created_at,
            self.delivered_at,
            _version(),
        ]


def batch_id(task_id: str, batch_no: int) -> str:
    return f"{task_id}_batch_{batch_no:03d}"


def batch_path(task_id: str, batch_no: int, day: datetime) -> str:
    d = day.astimezone(UTC)
    return f"data/{d:%Y/%m/%d}/{batch_id(task_id, batch_no)}.json"


class ReportStore:
    def __init__(self, store: ClickHouseStore):
        self.ch = store

    # --- tasks ---------------------------------------------------------------------------------
    async def save_tasks(self, tasks: list[TaskState]) -> None:
        if tasks:
            await self.ch.insert("report_tasks", [t.row() for t in tasks], TASK_COLUMNS)

    async def load_tasks(self, task_ids: list[str] | None = None) -> list[TaskState]:
        where, params = "", {}
        if task_ids is not None:
            where, params = "WHERE task_id IN {ids:Array(String)}", {"ids": task_ids}
        rows = await self.ch.query_dicts(
            f"SELECT {', '.join(TASK_COLUMNS[:-1])} FROM report_tasks FINAL {where}", params
        )
        out = []
        for r in rows:
            for k in ("created_at", "completed_at", "updated_at"):
                r[k] = _utc(r[k])
            out.append(TaskState(**r))
        return out

    async def unfinished_task_ids(self) -> list[str]:
        """Tasks whose reporting is not over: running, or completed without a delivered or
        dead `completed` batch."""
        rows = await self.ch.query_rows(
            "SELECT task_id FROM report_tasks FINAL WHERE status != 'completed' OR task_id NOT IN "
            "(SELECT task_id FROM report_batches FINAL WHERE completion_status = 'completed' "
            " AND state IN ('delivered', 'dead'))"
        )
        return [r[0] for r in rows]

    # --- batches -------------------------------------------------------------------------------
    async def save_batch(self, b: Batch) -> None:
        await self.ch.insert("report_batches", [b.row()], BATCH_COLUMNS)

    async def batches(self, task_id: str) -> list[Batch]:
        rows = await self.ch.query_dicts(
            f"SELECT {', '.join(c for c in BATCH_COLUMNS if c not in ('batch_id', 'version'))} "
            "FROM report_batches FINAL WHERE task_id = {t:String} ORDER BY batch_no",
            {"t": task_id},
        )
        out = []
        for r in rows:
            r["created_at"] = _utc(r["created_at"])
            r["delivered_at"] = _utc(r["delivered_at"])
            r["post_ids"] = list(r["post_ids"])
            out.append(Batch(**r))
        return out

    async def unreported_post_ids(self, task_id: str, limit: int) -> list[str]:
        """The task's stored posts (or, for a user task, users) that no batch holds yet,
        oldest collection first."""
        rows = await self.ch.query_rows(
            "SELECT id FROM (SELECT post_id AS id, collected_at, 0 AS rank FROM task_posts FINAL "
            " WHERE task_id = {t:String} UNION ALL "
            " SELECT user_id AS id, collected_at, rank FROM task_users FINAL "
            " WHERE task_id = {t:String}) WHERE id NOT IN "
            "(SELECT arrayJoin(post_ids) FROM report_batches FINAL WHERE task_id = {t:String}) "
            "ORDER BY collected_at, rank, id LIMIT {n:UInt32}",
            {"t": task_id, "n": limit},
        )
        return [r[0] for r in rows]

    async def task_users(self, task_id: str, user_ids: list[str]) -> list[dict]:
        """The users of a user task, in `user_ids` order, as the batch file shows them."""
        if not user_ids:
            return []
        rows = await self.ch.query_dicts(
            "SELECT t.user_id AS user_id, u.user_name AS user_name, u.name AS name, "
            "u.avatar AS avatar, u.description AS description, u.created_at AS created_at, "
            "u.followers AS followers, u.following AS following, "
            "u.statuses_count AS statuses_count, u.verified AS verified, "
            "u.blue_verified AS blue_verified, u.raw_data AS raw_data, t.relation AS relation, "
            "t.subject AS subject, t.rank AS rank, t.retweeted_at AS retweeted_at, "
            "t.collected_at AS collected_at "
            "FROM (SELECT * FROM task_users FINAL WHERE task_id = {t:String} "
            "      AND user_id IN {ids:Array(String)}) AS t "
            "LEFT JOIN (SELECT * FROM users FINAL WHERE user_id IN {ids:Array(String)}) AS u "
            "ON u.user_id = t.user_id",
            {"t": task_id, "ids": user_ids},
        )
        by_id = {r["user_id"]: r for r in rows}
        return [by_id[i] for i in user_ids if i in by_id]

    # --- batch contents ------------------------------------------------------------------------
    async def posts(self, post_ids: list[str]) -> list[Post]:
        if not post_ids:
            return []
        rows = await self.ch.query_dicts(
            f"SELECT {SELECT_POST} FROM posts FINAL WHERE post_id IN {{ids:Array(String)}}",
            {"ids": post_ids},
        )
        by_id = {r["post_id"]: post_from_row(r) for r in rows}
        return [by_id[i] for i in post_ids if i in by_id]

    async def media_results(self, urls: list[str]) -> dict[str, dict]:
        """original_url → its media_objects row (stored or failed), for the URLs that have one."""
        return await post_oss.media_results(self.ch, urls)

    async def save_posts_oss(self, b: Batch, media: dict[str, dict]) -> int:
        """The batch's posts rows again, with the media results and batch file its file shows
        (only those that gain a fact); how many rows were written."""
        return await post_oss.refresh(self.ch, b.post_ids, media, b.oss_file_path)


def batch_file(
    posts: list[Post],
    media: dict[str, dict],
    task_id: str,
    keyword: str,
    path: str,
    users: Sequence[dict] = (),
) -> bytes:
    """The batch file: a JSON array of the client's full post records, with each media's
    oss_url where it landed (media_status stored/failed with media_error/pending), and the
    task and file that reported them (the posts rows get the same, libs.storage.post_oss). A user task's file
    holds its user records instead (profile or retweeter, with the post/handle they belong to
    and the retweet time, None as X does not give it)."""
    out: list[dict] = [
        {
            "platform": "x",
            **u,
            "retweeted_at": _utc(u["retweeted_at"]),
            "collected_at": _utc(u["collected_at"]),
            "task_id": task_id,
            "keyword": keyword,
            "oss_file_path": path,
        }
        for u in users
    ]
    for p in posts:
        rec = post_oss.fill(p, media, path).model_dump(mode="json")
        rec.update(task_id=task_id, keyword=keyword, oss_file_path=path)
        out.append(rec)
    return orjson.dumps(out)
