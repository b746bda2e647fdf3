"""ClickHouseStore + migrations against the real ClickHouse engine, through both DSNs: the
embedded chdb engine (`chdb://`) and ClickHouse's HTTP interface (`http://`, infra/chdb_http)."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.storage.clickhouse import ClickHouseStore, content_token, normalize_dsn
from libs.storage.clickhouse import chdb_path as dsn_path
from libs.storage.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations, split_statements


@pytest.fixture(params=["chdb", "http"])
def store(request, chdb_path):
    dsn = (
        f"chdb://{chdb_path}"
        if request.param == "chdb"
        else request.getfixturevalue("clickhouse_http_dsn")
    )
    s = ClickHouseStore(dsn)
    assert s.is_embedded == (request.param == "chdb")
    try:
        yield s
    finally:
        s.close()


def test_normalize_dsn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        normalize_dsn("chdb://.xget/clickhouse") == f"chdb://{tmp_path.resolve()}/.xget/clickhouse"
    )
    assert normalize_dsn("chdb:///abs/x") == "chdb:///abs/x"
    assert normalize_dsn("chdb://:memory:") == "chdb://:memory:"
    assert normalize_dsn("http://u:p@h:8123/db") == "http://u:p@h:8123/db"
    assert dsn_path("chdb://rel") == str(tmp_path.resolve() / "rel")


def test_split_statements():
    sql = "-- header\nCREATE TABLE a (s String DEFAULT 'x;y') ENGINE=Memory;\n\nSELECT 1;\n-- only a comment\n"
    assert split_statements(sql) == [
        "-- header\nCREATE TABLE a (s String DEFAULT 'x;y') ENGINE=Memory",
        "SELECT 1",
    ]


def _write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(text)


def test_migrations_idempotent_and_checksum(store, tmp_path):
    mig = tmp_path / "migrations"
    mig.mkdir()
    _write(
        mig,
        "001_first.sql",
        "CREATE TABLE IF NOT EXISTS a (x UInt32) ENGINE = MergeTree ORDER BY x;\n"
        "CREATE TABLE IF NOT EXISTS b (s String) ENGINE = MergeTree ORDER BY s;\n",
    )
    _write(mig, "002_second.sql", "INSERT INTO a VALUES (1), (2);\n")
    _write(mig, "README.md", "not a migration")
    assert apply_migrations(store, mig) == ["001_first", "002_second"]
    assert apply_migrations(store, mig) == []
    assert store.query_rows_sync("SELECT count() FROM a") == [(2,)]  # 002 ran exactly once
    rows = store.query_rows_sync(
        "SELECT version, name, length(checksum) FROM schema_migrations ORDER BY version"
    )
    assert rows == [(1, "first", 64), (2, "second", 64)]

    _write(mig, "003_third.sql", "CREATE TABLE IF NOT EXISTS c (x UInt8) ENGINE = Memory")
    assert apply_migrations(store, mig) == ["003_third"]

    _write(
        mig,
        "001_first.sql",
        "CREATE TABLE IF NOT EXISTS a (x UInt64) ENGINE = MergeTree ORDER BY x;\n",
    )
    with pytest.raises(MigrationError, match=r"001_first\.sql was changed after it was applied"):
        apply_migrations(store, mig)


def test_failed_migration_is_not_recorded(store, tmp_path):
    mig = tmp_path / "m"
    mig.mkdir()
    _write(
        mig,
        "001_bad.sql",
        "CREATE TABLE IF NOT EXISTS ok1 (x UInt8) ENGINE = Memory;\nSELEC nonsense;\n",
    )
    with pytest.raises(MigrationError, match=r"001_bad\.sql failed"):
        apply_migrations(store, mig)
    assert store.query_rows_sync("SELECT count() FROM schema_migrations") == [(0,)]
    _write(mig, "001_bad.sql", "CREATE TABLE IF NOT EXISTS ok1 (x UInt8) ENGINE = Memory;\n")
    assert apply_migrations(store, mig) == ["001_bad"]


def test_repo_migrations_apply(store):
    if not any(MIGRATIONS_DIR.glob("[0-9]*_*.sql")):
        pytest.skip("no migrations in libs/storage/migrations yet")
    first = apply_migrations(store)
    assert first, "expected the repo's migrations to apply on an empty database"
    assert apply_migrations(store) == []


async def test_a_retried_insert_is_dropped_and_any_other_rows_are_stored(store):
    await store.command(
        "CREATE TABLE posts_t (post_id String, v UInt32) ENGINE = ReplacingMergeTree "
        "ORDER BY post_id SETTINGS non_replicated_deduplication_window = 1000"
    )
    await store.command("SYSTEM STOP MERGES posts_t")
    rows = [("1", 1), ("2", 1), ("3", 1)]
    cols = ["post_id", "v"]
    assert await store.insert("posts_t", rows, cols, dedup=True) == 3
    await store.insert("posts_t", list(rows), cols, dedup=True)  # the retry
    assert await store.query_rows("SELECT count() FROM posts_t") == [(3,)]
    # Other rows are stored however alike: one value changed, or split differently.
    await store.insert("posts_t", [("1", 2), ("2", 1), ("3", 1)], cols, dedup=True)
    await store.insert("posts_t", [("4", 1)], cols, dedup=True)
    await store.insert("posts_t", [("4", 1)], cols, dedup=True)  # the retry
    assert await store.query_rows("SELECT count() FROM posts_t") == [(7,)]
    assert await store.query_rows("SELECT post_id, v FROM posts_t FINAL ORDER BY post_id") == [
        ("1", 2),
        ("2", 1),
        ("3", 1),
        ("4", 1),
    ]


def test_content_token_tells_apart_what_only_looks_alike():
    cols = ["a", "b"]
    token = content_token("t", cols, [("x", None)])
    assert token == content_token("t", cols, [("x", None)])
    assert token != content_token("t", cols, [("x", "None")])
    assert token != content_token("u", cols, [("x", None)])  # another table
    assert content_token("t", cols, [("ab", "c")]) != content_token("t", cols, [("a", "bc")])
    assert content_token("t", ["a"], [(1,)]) != content_token("t", ["a"], [(1.0,)])
    assert content_token("t", ["a"], [(1,), (2,)]) != content_token("t", ["a"], [(2,), (1,)])


def test_content_token_of_a_big_batch_is_the_one_the_previous_release_computed():
    """The token streams the pickle into the hash: a retry of an insert that a counter of
    the previous release (which hashed pickle.dumps of the rows) wrote is still dropped."""
    cols = ["post_id", "raw", "n"]
    rows = [(str(i), "x" * 9_000 + str(i), i) for i in range(300)]  # ~2.7 MB, many frames
    h = hashlib.sha256(pickle.dumps(("posts", tuple(cols)), protocol=5))
    h.update(pickle.dumps(rows, protocol=5))
    assert content_token("posts", cols, rows) == f"posts:{h.hexdigest()[:32]}"
    assert content_token("posts", cols, rows[:-1]) != content_token("posts", cols, rows)


async def test_dedup_needs_window_setting(store):
    """Documented fact: on a plain MergeTree without non_replicated_deduplication_window the
    token is silently ignored (server default window = 0)."""
    await store.command("CREATE TABLE nowin (k UInt32) ENGINE = MergeTree ORDER BY k")
    for _ in range(2):
        await store.insert("nowin", [(1,), (2,)], ["k"], dedup=True)
    assert await store.query_rows("SELECT count() FROM nowin") == [(4,)]
    await store.command(
        "CREATE TABLE win (k UInt32) ENGINE = MergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    for _ in range(2):
        await store.insert("win", [(1,), (2,)], ["k"], dedup=True)
    assert await store.query_rows("SELECT count() FROM win") == [(2,)]
    # Caveat: with the window, identical batches WITHOUT a token collapse (data-hash dedup).
    for _ in range(2):
        await store.insert("win", [(7,)], ["k"])
    assert await store.query_rows("SELECT count() FROM win") == [(3,)]


async def test_final_and_uniqexact_exact_before_merges(store):
    await store.command(
        "CREATE TABLE p (keyword String, post_id String, collected_at DateTime('UTC'), v UInt32) "
        "ENGINE = ReplacingMergeTree(v) ORDER BY (keyword, post_id)"
    )
    await store.command("SYSTEM STOP MERGES p")
    ts = datetime(2026, 11, 1, tzinfo=UTC)
    cols = ["keyword", "post_id", "collected_at", "v"]
    await store.insert("p", [("ai", str(i), ts, 1) for i in range(0, 100)], cols)
    await store.insert("p", [("ai", str(i), ts, 2) for i in range(50, 150)], cols)
    await store.insert("p", [("ml", str(i), ts, 1) for i in range(0, 10)], cols)
    parts = await store.query_rows(
        "SELECT count() FROM system.parts "
        "WHERE database = currentDatabase() AND table = 'p' AND active"
    )
    assert parts[0][0] >= 3, "merges happened; the test would prove nothing"
    assert await store.query_rows("SELECT count() FROM p") == [(210,)]
    assert await store.query_rows(
        "SELECT keyword, count() FROM p FINAL GROUP BY keyword ORDER BY keyword"
    ) == [("ai", 150), ("ml", 10)]
    assert await store.query_rows(
        "SELECT keyword, uniqExact(post_id) FROM p GROUP BY keyword ORDER BY keyword"
    ) == [("ai", 150), ("ml", 10)]
    # FINAL keeps the highest version for a replaced row.
    assert await store.query_rows(
        "SELECT v FROM p FINAL WHERE post_id = {id:String}", {"id": "60"}
    ) == [(2,)]


async def test_parameter_binding(store):
    await store.command(
        "CREATE TABLE t (id UInt64, s String, at DateTime('UTC')) ENGINE = MergeTree ORDER BY id"
    )
    nasty = 'x\'); DROP TABLE t; --\\ "quoted"'
    at = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    await store.insert("t", [(1, nasty, at), (2, "b", at), (3, "c", at)], ["id", "s", "at"])
    assert await store.query_rows("SELECT id FROM t WHERE s = {s:String}", {"s": nasty}) == [(1,)]
    assert await store.query_rows(
        "SELECT id FROM t WHERE id IN {ids:Array(UInt64)} ORDER BY id", {"ids": [2, 3, 9]}
    ) == [(2,), (3,)]
    assert await store.query_rows(
        "SELECT count() FROM t WHERE at >= {since:DateTime}", {"since": at}
    ) == [(3,)]
    assert await store.query_dicts("SELECT id, s FROM t WHERE id = {id:UInt64}", {"id": 2}) == [
        {"id": 2, "s": "b"}
    ]
    assert store.query_rows_sync("SELECT {a:UInt32} + {b:UInt32}", {"a": 2, "b": 3}) == [(5,)]
    assert await store.command("SELECT count() FROM t") == 3


async def test_concurrent_calls_are_serialised(store):
    await store.command(
        "CREATE TABLE c (k UInt32) ENGINE = MergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 1000"
    )
    await asyncio.gather(
        *(store.insert("c", [(i,)], ["k"], dedup=True) for i in range(40)),
        *(store.query_rows("SELECT count() FROM c") for _ in range(20)),
    )
    assert await store.query_rows("SELECT count(), uniqExact(k) FROM c") == [(40, 40)]
    assert store.insert_sync("c", [], ["k"]) == 0


def test_closed_store_raises(chdb_path):
    s = ClickHouseStore(f"chdb://{chdb_path}")
    assert s.query_rows_sync("SELECT 1") == [(1,)]
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.query_rows_sync("SELECT 1")


def test_insert_follows_a_column_type_changed_after_the_first_insert(store):
    """Column types are read once per table and cached; a migration that changes a column
    later must not make inserts fail or store wrong values."""
    store.command_sync("CREATE TABLE counts (k String, n UInt8) ENGINE = MergeTree ORDER BY k")
    store.insert_sync("counts", [["a", 1]], ["k", "n"])
    store.command_sync("ALTER TABLE counts MODIFY COLUMN n UInt64")
    store.insert_sync("counts", [["b", 300], ["c", 2**40]], ["k", "n"])  # past UInt8
    store.command_sync("ALTER TABLE counts MODIFY COLUMN n String")
    store.insert_sync("counts", [("d", "many")], ("k", "n"))
    assert store.query_rows_sync("SELECT k, toString(n) FROM counts ORDER BY k") == [
        ("a", "1"),
        ("b", "300"),
        ("c", str(2**40)),
        ("d", "many"),
    ]


def test_failed_insert_with_unchanged_types_is_raised_once(store):
    """A bad row is the caller's error, not a stale cache: it is raised, nothing is stored
    twice and the next good insert goes through."""
    store.command_sync("CREATE TABLE small (k String, n UInt8) ENGINE = MergeTree ORDER BY k")
    store.insert_sync("small", [["a", 1]], ["k", "n"])
    # The client refuses the row while serialising it; its exception class depends on the
    # column type and the driver version, and the point is that the good rows still land.
    with pytest.raises(Exception):  # noqa: B017
        store.insert_sync("small", [["b", "not a number"]], ["k", "n"])
    store.insert_sync("small", [["c", 3]], ["k", "n"])
    assert store.query_rows_sync("SELECT k, n FROM small ORDER BY k") == [("a", 1), ("c", 3)]


def test_slow_calls_are_logged_without_their_parameters(chdb_path, caplog):
    """Over slow_query_ms a call is one WARNING naming its SQL (an insert: its table) and how
    long it ran and queued; the values bound to it never appear. No threshold, no log."""
    secret = "bound-value-never-logged"
    quiet = ClickHouseStore(f"chdb://{chdb_path}")
    try:
        with caplog.at_level("WARNING", logger="xget.clickhouse"):
            quiet.query_rows_sync("SELECT {s:String}", {"s": secret})
        assert not caplog.records
    finally:
        quiet.close()
    s = ClickHouseStore(f"chdb://{chdb_path}", slow_query_ms=0)
    try:
        s.command_sync("CREATE TABLE logged (k String) ENGINE = MergeTree ORDER BY k")
        caplog.clear()
        with caplog.at_level("WARNING", logger="xget.clickhouse"):
            s.insert_sync("logged", [[secret]], ["k"])
            s.query_rows_sync("SELECT count()\n  FROM logged WHERE k = {s:String}", {"s": secret})
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2, lines
        assert lines[0].startswith("clickhouse call took ") and lines[0].endswith(
            ": INSERT INTO logged"
        )
        assert "ran " in lines[1] and "queued " in lines[1]
        assert lines[1].endswith(": SELECT count() FROM logged WHERE k = {s:String}")
        assert not any(secret in line for line in lines)
    finally:
        s.close()
