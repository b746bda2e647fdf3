"""What an operator steers on the account pool, end to end (real broker, simulator, services
as OS processes, the account-manager restartable on its own): disable/enable with a reason
(CLI and admin API), tags that restrict a task to their accounts, a daily cap that holds
across a restart of the account-manager, and the scheduled check that finds a dead idle
account before any task needs it."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import pytest

from infra.service_process import ServiceProcess, wait_until

from .harness import Gateway, Simulator
from .test_accounts import Admin, cli
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

START, END = "2026-08-01T00:00:00Z", "2026-08-03T00:00:00Z"  # 2,880 posts at 60/h
PAGES = 4  # pages of a 61-post task: 20 per page, and the counter confirms after the 4th


def test_operator_controls(noida, xsim, tmp_path, chdb_path):
    uid = uuid.uuid4().hex[:6]
    sim = Simulator(xsim)
    names = {n: f"{n}{uid}" for n in ("ann", "bob", "cat")}
    tokens = {n: f"tok-{n}-{uuid.uuid4().hex}" for n in names}
    settings = pipeline_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        x_accounts=",".join(f"{names[n]}:{tokens[n]}:ct0-{n}" for n in names),
        account_idle_check_s=3,
        account_request_wait_s=2,
    )
    core = ServiceProcess(
        "core", ["task-gateway", "scraper", "parser", "dedup-counter"], settings, tmp_path
    ).start()
    manager = ServiceProcess("am", ["account-manager"], settings, tmp_path).start()
    gw, admin = Gateway(settings), Admin(settings)

    def tail() -> str:
        return core.tail(30) + "\n" + manager.tail(30)

    def requests_of(who: str, since: float = 0.0) -> list[dict]:
        return [e for e in sim.log() if e.get("account") == tokens[who] and e["received"] >= since]

    def run_task(**extra) -> tuple[str, str]:
        keyword = f"ctl{uuid.uuid4().hex[:8]}"
        r = gw.submit(keyword=keyword, required_count=61, start_time=START, end_time=END, **extra)
        assert r.status_code == 200, r.text
        return r.json()["task_id"], keyword

    def completed(task_id: str) -> None:
        wait_until(
            lambda: gw.status(task_id)["status"] == "completed",
            90,
            f"task {task_id} to complete\n{tail()}",
        )

    def searched_by(keyword: str) -> set[str]:
        by_token = {t: n for n, t in tokens.items()}
        return {by_token.get(e["account"], e["account"]) for e in sim.search_requests(keyword)}

    try:
        wait_until(
            lambda: core.alive() and manager.alive() and gw.ready() and admin.ready(),
            60,
            f"gateway and admin API\n{tail()}",
        )
        wait_until(
            lambda: all(admin.account(names[n])["status"] == "active" for n in names),
            30,
            f"the accounts to be added\n{tail()}",
        )

        # 1. cat's cookies die while it is idle: the scheduled check finds it, no task does.
        expired_at = time.time()
        sim.client.post("/_sim/tokens/expire", json={"auth_token": tokens["cat"]})
        cat = wait_until(
            lambda: (a := admin.account(names["cat"]))["status"] == "needs_login" and a,
            30,
            f"the scheduled check to find cat's expired cookies\n{tail()}",
        )
        assert cat["last_test"].startswith("scheduled check: auth_failed"), cat
        assert cat["counts"]["errors"].get("auth_failed", 0) >= 1
        after = requests_of("cat", expired_at)
        assert after and {e["operation"] for e in after} == {"UserByScreenName"}, after
        assert {e["status"] for e in after} == {401}
        # the design's List[AccountResponse]: a bare list, its length in X-Total-Count, and
        # its status filter
        r = admin.client.get("/api/v1/admin/accounts")
        assert r.status_code == 200 and isinstance(r.json(), list), r.text
        assert {x["id"] for x in r.json()} == set(names.values())
        assert r.headers["X-Total-Count"] == "3"
        r = admin.client.get("/api/v1/admin/accounts", params={"status": "needs_login"})
        assert [x["id"] for x in r.json()] == [names["cat"]] and r.headers["X-Total-Count"] == "1"

        # 2. bob disabled (CLI): no request reaches X with bob's cookies; enabled again
        # (admin API), he serves the next task while ann is disabled.
        out = cli(settings, "accounts", "disable", names["bob"], "--reason", "under review")
        assert out.returncode == 0, out.stderr
        assert "disabled (under review)" in out.stdout, out.stdout
        bob = admin.account(names["bob"])
        assert not bob["enabled"] and bob["disabled_reason"] == "under review"
        assert bob["status"] == "active"  # its own state is kept
        disabled_at = time.time()
        task, keyword = run_task()
        completed(task)
        assert searched_by(keyword) == {"ann"}
        assert requests_of("bob", disabled_at) == []
        r = admin.client.post(f"/api/v1/admin/accounts/{names['bob']}/enable", json={})
        assert r.status_code == 200 and r.json()["enabled"], r.text
        r = admin.client.post(
            f"/api/v1/admin/accounts/{names['ann']}/disable", json={"reason": "rotation"}
        )
        assert r.status_code == 200 and r.json()["disabled_reason"] == "rotation", r.text
        assert (
            admin.client.post(f"/api/v1/admin/accounts/{names['ann']}/disable", json={"x": 1})
        ).status_code == 422
        task, keyword = run_task()
        completed(task)
        assert searched_by(keyword) == {"bob"}
        assert admin.client.post(f"/api/v1/admin/accounts/{names['ann']}/enable").status_code == 200

        # 3. A tag restricts a task to its accounts.
        r = admin.client.patch(f"/api/v1/admin/accounts/{names['bob']}", json={"tags": ["vip"]})
        assert r.status_code == 200 and r.json()["tags"] == ["vip"], r.text
        for _ in range(2):  # twice: an untagged lease on ann must not serve it either
            task, keyword = run_task(account_tag="vip")
            completed(task)
            assert searched_by(keyword) == {"bob"}
        bad = gw.submit(
            keyword="x", start_time=START, end_time=END, account_tag="v" * 65
        ).status_code
        assert bad == 422

        # 4. A daily cap on bob's searches holds across a restart of the account-manager.
        def bob_searches() -> int:
            return len([e for e in requests_of("bob") if e["operation"] == "SearchTimeline"])

        wait_until(  # every search bob made is counted (the events are asynchronous)
            lambda: (
                admin.account(names["bob"])["operations"]["SearchTimeline"]["today"]
                == bob_searches()
            ),
            30,
            f"bob's searches to be counted\n{tail()}",
        )
        today = bob_searches()
        r = admin.client.patch(
            f"/api/v1/admin/accounts/{names['bob']}",
            json={"daily_caps": {"SearchTimeline": today + 2}},
        )
        assert r.status_code == 200 and r.json()["daily_caps"] == {"SearchTimeline": today + 2}
        capped, keyword = run_task(account_tag="vip")
        wait_until(
            lambda: (
                len(sim.search_requests(keyword)) >= 2
                and gw.status(capped)["status"] == "waiting_for_accounts"
            ),
            # Bob's X window may be spent by the earlier steps: his 2 capped requests can wait
            # for its reset (the simulator's window is 60 s), so the deadline is longer.
            150,
            f"the capped task to make 2 requests, then wait for accounts\n{tail()}",
        )
        midnight = time.strftime("%Y-%m-%dT00:00:00", time.gmtime(time.time() + 86400))
        wait_until(  # the wait names when the cap lifts: the next UTC midnight
            lambda: gw.status(capped)["waiting_for_accounts"]["until"].startswith(midnight),
            10,
            f"the wait to name the next midnight: {gw.status(capped)}",
        )
        manager.stop()
        manager = ServiceProcess("am2", ["account-manager"], settings, tmp_path).start()
        wait_until(lambda: admin.ready(), 60, f"the restarted account-manager\n{tail()}")
        # The scraper asks again every account_request_wait_s (2 s): four rounds go by, each
        # of which the restarted manager would have granted had it forgotten the cap.
        time.sleep(8)
        assert manager.alive(), manager.tail()
        assert len(sim.search_requests(keyword)) == 2, "the cap was forgotten on restart"
        assert gw.status(capped)["status"] == "waiting_for_accounts"
        bob = admin.account(names["bob"])
        assert bob["operations"]["SearchTimeline"]["today"] == today + 2
        assert bob["counts"]["requests"] >= bob["counts"]["successes"] > 0
        assert bob["counts"]["last_used_at"]
        gw.client.post(f"/api/v1/tasks/{capped}/cancel", json={})
    finally:
        manager.stop()
        core.stop()


def test_password_cookies_refreshed_before_they_expire(noida, xsim, tmp_path, chdb_path):
    """A password account whose sessions last 60 s (the simulator's cookies say so): the
    account-manager reads the expiry from the login page's cookies and logs in again 30 s
    before it, so the scheduled checks that use the account meanwhile never meet expired
    cookies (no 401 in the simulator's log), and the account stays active."""
    uid = uuid.uuid4().hex[:6]
    sim = Simulator(xsim)
    name, password = f"pat{uid}", f"pw-{uuid.uuid4().hex}"
    ttl = 60
    r = sim.client.post(
        "/_sim/accounts", json={"username": name, "password": password, "session_ttl_s": ttl}
    )
    r.raise_for_status()
    settings = pipeline_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        x_accounts="",
        x_login_url=f"{xsim}/i/flow/login",
        account_cookie_refresh_s=30,
        account_cooldown_s=5,
        account_idle_check_s=2,
    )
    manager = ServiceProcess("am", ["account-manager"], settings, tmp_path).start()
    admin = Admin(settings)
    try:
        wait_until(lambda: manager.alive() and admin.ready(), 60, manager.tail())
        admin.add(username=name, password=password)
        first = wait_until(
            lambda: (a := admin.account(name))["status"] == "active" and a["logins"] >= 1 and a,
            90,
            f"the first login through Chromium\n{manager.tail()}",
        )
        expires = datetime.fromisoformat(first["cookies_expire_at"]).timestamp()
        assert expires - time.time() <= ttl, first  # the cookies' own expiry, not a default
        again = wait_until(
            lambda: (a := admin.account(name))["logins"] >= 2 and a,
            ttl + 30,
            f"a login before the cookies expire\n{manager.tail()}",
        )
        refreshed = datetime.fromisoformat(again["last_login_at"]).timestamp()
        assert refreshed < expires, (refreshed, expires)
        # Past the first cookies' expiry, with checks every 2 s: none was refused.
        time.sleep(max(0.0, expires + 8 - time.time()))
        requests = [e for e in sim.log() if e.get("account") == name.lower()]
        checks = [e for e in requests if e.get("operation") == "UserByScreenName"]
        seen = [(e["operation"], e["status"], round(e["received"] - expires, 1)) for e in requests]
        assert checks and [e for e in checks if e["received"] > expires], (seen, manager.tail())
        assert not [e for e in requests if e["status"] == 401], requests
        assert admin.account(name)["status"] == "active"
    finally:
        manager.stop()
