"""Kill mid-run and ClickHouse outages: nothing fetched twice, nothing lost."""

from __future__ import annotations

import subprocess
import sys
import uuid

from infra import local
from infra.service_process import wait_until
from libs.topics import KOL_TOPICS

USER_COLS = (
    "id, name, user_name, avatar, description, created_at, created_at_time, "
    "followers, following, statuses_count"
)


def _result(env, settings=None) -> tuple[list, set]:
    dsn = (settings or env.settings).clickhouse_dsn
    from libs.storage.clickhouse import ClickHouseStore

    with ClickHouseStore(dsn) as ch:
        users = sorted(ch.query_rows_sync(f"SELECT {USER_COLS} FROM twitter_kol_all FINAL"))
        names = dict(ch.query_rows_sync("SELECT id, user_name FROM twitter_kol FINAL"))
        edges = {
            (names[k], f)
            for k, f in ch.query_rows_sync(
                "SELECT kol_id, following_id FROM twitter_kol_following GROUP BY 1, 2"
            )
        }
    return users, edges


def test_kill_after_four_kols_then_run_again_fetches_nothing_twice(kol_env, noida, tmp_path):
    env = kol_env
    assert env.cli("kol", "import", str(env.write_kols()))[0] == 0
    since = env.log_seq()
    slow = env.settings.model_copy(update={"kol_api_interval_s": 0.05})
    proc = env.popen("kol-followings", settings=slow)
    try:
        # KOLs run in list order: the first call for KOL 5 means KOLs 1-4 are stored
        wait_until(
            lambda: (
                any(c["raw_query"] == env.handles[4] for c in env.calls(since, op="api.info"))
                or proc.poll()
            ),
            60,
            "the run to reach KOL 5",
        )
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before_kill = env.calls(since)
    assert {c["raw_query"] for c in before_kill} >= set(env.handles[:4])

    after = env.log_seq()
    code, out = env.cli("kol-followings")
    assert code == 0, out
    again = env.calls(after) + env.calls(after, op="api.info")
    assert not [c for c in again if c["raw_query"] in env.handles[:4]], again
    asked_before = {(c["raw_query"], c["cursor"]) for c in before_kill}
    repeated = [c for c in env.calls(after) if (c["raw_query"], c["cursor"]) in asked_before]
    assert len(repeated) <= 1, repeated  # at most the call in flight when it was killed

    # the same rows as an uninterrupted run (fresh cache and database)
    ref_prefix = f"k{uuid.uuid4().hex[:8]}-"
    local.create_topics_sync(noida.bootstrap, ref_prefix, KOL_TOPICS)
    (tmp_path / "ref").mkdir()
    ref = env.settings.model_copy(
        update={"topic_prefix": ref_prefix, "clickhouse_dsn": f"chdb://{tmp_path / 'ref'}"}
    )
    assert env.cli("kol", "import", str(env.write_kols()), settings=ref)[0] == 0
    assert env.cli("kol-followings", settings=ref)[0] == 0
    got, want = _result(env), _result(env, ref)
    assert got[0] == want[0] and got[1] == want[1]
    assert len(got[1]) == 10 * 50


HOLDER = """
import sys
from libs.storage.clickhouse import ClickHouseStore
s = ClickHouseStore(sys.argv[1]); s.query_rows_sync("SELECT 1")
print("locked", flush=True)
sys.stdin.read()
"""


def test_clickhouse_unavailable_after_fetch_then_resume_stores_with_zero_calls(kol_env):
    env = kol_env
    assert env.cli("kol", "import", str(env.write_kols(env.handles[:3])))[0] == 0
    since = env.log_seq()
    # hold the first call at the simulator, take the database away meanwhile, then release
    env.admin.post("/_sim/faults", json={"kind": "hold", "operation": "api.info", "count": 1})
    proc = env.popen("kol-followings")
    holder = None
    try:
        wait_until(
            lambda: env.admin.get("/_sim/faults").json()[0]["fired"] == 1,
            60,
            "the first call to reach the simulator",
        )
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, env.dsn],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": str(local.REPO_ROOT)},
            cwd=local.REPO_ROOT,
        )
        assert holder.stdout.readline().strip() == "locked"
        env.admin.delete("/_sim/faults")  # releases the held call
        code = proc.wait(120)
        log = (env.tmp / next(p.name for p in env.tmp.glob("cli-*.log"))).read_text()
        assert code == 1, log
        assert "ClickHouse unavailable" in log and "--resume" in log, log
        fetched = env.calls(since)
        assert {c["raw_query"] for c in fetched} == set(env.handles[:3])
    finally:
        if proc.poll() is None:
            proc.kill()
        if holder is not None:
            holder.stdin.close()
            holder.wait(30)

    after = env.log_seq()
    code, out = env.cli("kol-followings", "--resume")
    assert code == 0, out
    assert "3 of 3 KOLs complete" in out and "API calls 0" in out, out
    assert env.calls(after) == [] and env.calls(after, op="api.info") == []
    users, edges = _result(env)
    assert edges == {(h, uid) for h in env.handles[:3] for uid in env.expected(h)}
    assert len(users) == len({uid for _, uid in edges})


def test_ctrl_c_stops_cleanly_and_the_next_run_continues(kol_env):
    import signal

    env = kol_env
    assert env.cli("kol", "import", str(env.write_kols()))[0] == 0
    since = env.log_seq()
    slow = env.settings.model_copy(update={"kol_api_interval_s": 0.05})
    proc = env.popen("kol-followings", settings=slow)
    try:
        wait_until(lambda: len(env.calls(since)) >= 5 or proc.poll() is not None, 60, "a few calls")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = next(env.tmp.glob("cli-*.log")).read_text()
    assert "stopped early" in log, log
    first = {(c["raw_query"], c["cursor"]) for c in env.calls(since)}
    after = env.log_seq()
    code, out = env.cli("kol-followings")
    assert code == 0, out
    second = [(c["raw_query"], c["cursor"]) for c in env.calls(after)]
    assert not first & set(second)  # a graceful stop loses no answer: nothing asked twice
    assert len(first) + len(second) == 10 * 3
    assert env.query("SELECT count() FROM twitter_kol_progress FINAL")[0][0] == 10
