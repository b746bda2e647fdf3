"""KOL followings tests: the simulator (shared Following population), real noida-db, chdb.

Each test gets its own topic prefix (a fresh cache), its own chdb directory and its own KOL
handles, so the simulator's request log can be filtered to exactly this test's calls.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra import local
from infra.service_process import REPO, settings_env
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from libs.topics import CATALOGUE

API_KEY = "kol-test-key"
PAGE = 20
PER_KOL = 50  # followings per KOL: 3 API pages of 20
POOL = 150  # 10 KOLs x 50 of 150 users: each user followed by ~3.3 KOLs


@dataclass
class KolEnv:
    settings: Settings
    sim: str
    handles: list[str]
    tmp: Path
    admin: httpx.Client = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def dsn(self) -> str:
        return self.settings.clickhouse_dsn

    def write_kols(self, handles: list[str] | None = None) -> Path:
        p = self.tmp / f"kols-{uuid.uuid4().hex[:6]}.txt"
        p.write_text("\n".join("@" + h for h in (handles or self.handles)) + "\n")
        return p

    def log_seq(self) -> int:
        entries = self.admin.get("/_sim/log").json()
        return entries[-1]["seq"] if entries else 0

    def calls(self, since: int = 0, op: str = "api.followings") -> list[dict]:
        """This test's calls to the simulator (its handles / KOL ids) since a log position."""
        mine = {h.lower() for h in self.handles}
        out = []
        for e in self.admin.get("/_sim/log", params={"since_seq": since}).json():
            if e["operation"] != op:
                continue
            if op.startswith("api.") and (e["raw_query"] or "").lower() not in mine:
                continue
            out.append(e)
        return out

    def expected(self, handle: str) -> list[str]:
        return self.admin.get("/_sim/followings", params={"user": handle}).json()["ids"]

    def cli(
        self, *args: str, settings: Settings | None = None, stdin: str | None = None
    ) -> tuple[int, str]:
        """Run `xget ARGS` in this process (stdout captured)."""
        from services.cli import main

        env = settings_env(settings or self.settings)
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                if stdin is not None:
                    sys.stdin = io.StringIO(stdin)
                code = main(list(args))
        finally:
            sys.stdin = sys.__stdin__
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return code, out.getvalue()

    def popen(self, *args: str, settings: Settings | None = None) -> subprocess.Popen:
        env = {**os.environ, **settings_env(settings or self.settings), "PYTHONPATH": str(REPO)}
        log = open(self.tmp / f"cli-{uuid.uuid4().hex[:6]}.log", "wb")
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def query(self, sql: str, params: dict | None = None) -> list[tuple]:
        with ClickHouseStore(self.dsn) as ch:
            return ch.query_rows_sync(sql, params)


@pytest.fixture
def kol_env(noida, xsim, tmp_path, chdb_path, request) -> Any:
    prefix = f"k{uuid.uuid4().hex[:8]}-"
    local.create_topics_sync(noida.bootstrap, prefix, CATALOGUE)
    settings = noida.settings(
        topic_prefix=prefix,
        clickhouse_dsn=f"chdb://{chdb_path}",
        kol_source="api",
        kol_api_base_url=xsim,
        kol_api_key=API_KEY,
        kol_api_interval_s=0.0,
        kol_api_page_size=PAGE,
        kol_store_retry_s=0.0,
        x_graphql_url=f"{xsim}/i/api/graphql",
        x_transaction_id="static",
        x_request_timeout_s=10.0,
        kol_x_page_size=PAGE,
        x_accounts=f"{prefix}a:{prefix}tok-a:ct0-a,{prefix}b:{prefix}tok-b:ct0-b",
        log_level="WARNING",
    )
    tag = uuid.uuid4().hex[:6]
    handles = [f"kol{i}_{tag}" for i in range(10)]
    with httpx.Client(base_url=xsim, timeout=10) as admin:
        admin.post("/_sim/config", json={"following_pool": POOL, "users_per_list": PER_KOL})
        try:
            yield KolEnv(settings, xsim, handles, tmp_path, admin)
        finally:
            admin.delete("/_sim/faults")
            admin.post("/_sim/config", json={"following_pool": 0, "users_per_list": 150})
