"""Apply ClickHouse schema migrations: ``python -m libs.storage.migrate [--dsn DSN] [--dir DIR]``.

Migrations are the files ``libs/storage/migrations/NNN_name.sql``, applied in ascending NNN order,
each once. Applied versions are recorded in the ``schema_migrations`` table (version, name,
checksum, applied_at). Re-running is a no-op; an already-applied file whose content changed is
an error (write a new migration instead of editing an old one).

A file may hold several statements: they are split on ``;`` at the end of a line (a ``;``
inside a line, e.g. in a string literal, does not split). ``--`` comment-only chunks are
skipped. Statements should be idempotent (``CREATE TABLE IF NOT EXISTS``) because a file that
fails half-way is not recorded and is re-run from its start next time.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from libs.storage.clickhouse import ClickHouseStore

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_FILE_RE = re.compile(r"^(\d+)_([A-Za-z0-9_\-]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        return split_statements(self.sql)


def split_statements(sql: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    for line in sql.splitlines():
        cur.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(cur))
            cur = []
    if cur:
        out.append("\n".join(cur))
    stmts = []
    for s in out:
        s = s.strip()
        if s.endswith(";"):
            s = s[:-1].rstrip()
        body = "\n".join(ln for ln in s.splitlines() if not ln.strip().startswith("--")).strip()
        if body:
            stmts.append(s)
    return stmts


def discover(directory: Path | str = MIGRATIONS_DIR) -> list[Migration]:
    directory = Path(directory)
    found: dict[int, Migration] = {}
    if not directory.is_dir():
        return []
    for p in sorted(directory.iterdir()):
        m = _FILE_RE.match(p.name)
        if not m or not p.is_file():
            continue
        version = int(m.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations share version {version}: {found[version].path.name} and {p.name}"
            )
        found[version] = Migration(version, m.group(2), p, p.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


_TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY version
"""


def apply_migrations(store: ClickHouseStore, directory: Path | str = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order; return the applied ones as ``NNN_name`` strings."""
    migrations = discover(directory)
    store.command_sync(_TRACKING_DDL)
    applied = {
        int(v): (n, c)
        for v, n, c in store.query_rows_sync(
            "SELECT version, name, checksum FROM schema_migrations"
        )
    }
    # Check every already-applied file before applying anything new.
    for m in migrations:
        if m.version in applied and applied[m.version][1] != m.checksum:
            raise MigrationError(
                f"migration {m.path.name} was changed after it was applied "
                f"(recorded checksum {applied[m.version][1][:12]}…, file now {m.checksum[:12]}…); "
                "never edit an applied migration — add a new NNN_*.sql file instead"
            )
    done: list[str] = []
    for m in migrations:
        if m.version in applied:
            continue
        for stmt in m.statements():
            try:
                store.command_sync(stmt)
            except Exception as exc:
                raise MigrationError(
                    f"migration {m.path.name} failed at:\n{stmt}\n→ {exc}"
                ) from exc
        store.insert_sync(
            "schema_migrations", [(m.version, m.name, m.checksum)], ["version", "name", "checksum"]
        )
        done.append(f"{m.version:03d}_{m.name}")
    return done


def main(argv: list[str] | None = None) -> int:
    from libs.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", help="ClickHouse DSN (default: XGET_CLICKHOUSE_DSN / settings)")
    ap.add_argument("--dir", default=str(MIGRATIONS_DIR), help="migrations directory")
    args = ap.parse_args(argv)
    dsn = args.dsn or Settings().clickhouse_dsn
    store = ClickHouseStore(dsn)
    try:
        done = apply_migrations(store, args.dir)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print("applied: " + (", ".join(done) if done else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
