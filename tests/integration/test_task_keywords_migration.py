"""Migration 017 on a store that already holds tasks' posts: task_keywords starts out naming
every task's keyword, later collections reach it in the same insert, 013's task_counts (whose
states nothing reads any more) is gone."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

from libs.storage.clickhouse import ClickHouseStore
from libs.storage.migrate import MIGRATIONS_DIR, apply_migrations

T0 = datetime(2026, 11, 2, tzinfo=UTC)
TASK_POST_COLUMNS = ["task_id", "post_id", "keyword", "collected_at"]


def _rows(task: str, keyword: str, ids: range, at: datetime) -> list[list]:
    return [[task, str(1_870_000_000_000_000_000 + i), keyword, at] for i in ids]


async def test_017_names_every_task_of_a_keyword_before_and_after(chdb_path, tmp_path):
    before = tmp_path / "migrations-before-017"
    before.mkdir()
    for f in MIGRATIONS_DIR.glob("*.sql"):
        if int(f.name[:3]) < 17:
            shutil.copy(f, before / f.name)
    store = ClickHouseStore(f"chdb://{chdb_path}")
    try:
        apply_migrations(store, before)
        await store.insert("task_posts", _rows("t-a", "kw", range(0, 6), T0), TASK_POST_COLUMNS)
        await store.insert(
            "task_posts",
            _rows("t-b", "kw", range(3, 9), T0 - timedelta(hours=1)),
            TASK_POST_COLUMNS,
        )
        await store.insert("task_posts", _rows("t-c", "other", range(0, 2), T0), TASK_POST_COLUMNS)

        assert [m.split("_")[0] for m in apply_migrations(store)] == ["017"]
        tables = {r[0] for r in await store.query_rows("SELECT name FROM system.tables")}
        assert "task_counts" not in tables and "task_counts_mv" not in tables
        # a task collected after the migration, and one more collection of an old task
        await store.insert("task_posts", _rows("t-d", "kw", range(8, 10), T0), TASK_POST_COLUMNS)
        await store.insert("task_posts", _rows("t-a", "kw", range(6, 7), T0), TASK_POST_COLUMNS)
        pairs = await store.query_rows(
            "SELECT DISTINCT task_id, keyword FROM task_keywords ORDER BY task_id"
        )
        assert pairs == [("t-a", "kw"), ("t-b", "kw"), ("t-c", "other"), ("t-d", "kw")]
    finally:
        store.close()
