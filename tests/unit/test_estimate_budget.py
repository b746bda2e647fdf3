"""Estimates from the budget the pool actually has left for the task's X operation and from
the queue ahead of the task (the gateway's read model filled by hand, no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.records.accounts import AccountState, OpWindow
from libs.records.tasks import OnDemandTask, TaskControl, TaskProgress
from libs.settings import Settings
from services.task_gateway.estimate import estimate
from services.task_gateway.task_view import TaskView

NOW = datetime.now(UTC)
T0, T1 = datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 8, 2, tzinfo=UTC)
S = Settings(
    _env_file=None,
    x_rate_limits="SearchTimeline:50,UserByScreenName:95",
    x_rate_window_s=900,
    estimate_seconds_per_page=1.0,
    x_page_size=20,
)


def account(name: str, used: int, resets_in: float | None, **kw) -> AccountState:
    w = OpWindow(
        limit=50,
        used=used,
        window_reset=NOW + timedelta(seconds=resets_in) if resets_in is not None else None,
    )
    return AccountState(
        account_id=name,
        name=name,
        status="active",
        ops={"SearchTimeline": w},
        added_at=NOW,
        updated_at=NOW,
        **kw,
    )


def task(task_id: str, required: int, *, priority: int = 5, minutes_ago: float = 0, **kw):
    return OnDemandTask(
        task_id=task_id,
        keyword="k",
        priority=priority,
        required_count=required,
        start_time=T0,
        end_time=T1,
        submitted_at=NOW - timedelta(minutes=minutes_ago),
        **kw,
    )


def view(*accounts: AccountState, tasks=()) -> TaskView:
    v = TaskView(S)
    v.accounts.rows = {a.account_id: a for a in accounts}
    v.commands.rows = {t.task_id: t for t in tasks}
    return v


def test_spent_window_waits_for_its_reset():
    v = view(account("a", 50, 300), account("b", 50, 420))
    new = task("t", 200)  # 10 requests
    e = estimate(S, new, 2, v.capacity(new, NOW))
    assert e["budget"]["left_in_window"] == 0 and e["budget"]["window_resets_in_s"] > 290
    assert 300 <= e["seconds"] < 310  # the first reset, then 10 requests on 2 accounts
    fresh = view(account("a", 0, None), account("b", 0, None))
    assert estimate(S, new, 2, fresh.capacity(new, NOW))["seconds"] == 5.0


def test_budget_left_now_is_used_first():
    v = view(account("a", 45, 300))  # 5 left now
    small, big = task("s", 100), task("b", 200)  # 5 and 10 requests
    assert estimate(S, small, 1, v.capacity(small, NOW))["seconds"] == 5.0
    assert estimate(S, big, 1, v.capacity(big, NOW))["seconds"] >= 300


def test_queue_ahead_at_its_priority_counts():
    ahead = task("ahead", 1000, minutes_ago=5)  # 50 requests, none done
    half = task("half", 1000, minutes_ago=4)  # 50 requests, half collected
    low = task("low", 1000, priority=9, minutes_ago=3)  # lower priority: not ahead
    done = task("done", 1000, minutes_ago=2)
    gone = task("gone", 1000, minutes_ago=1)
    other_op = task("p", 0, operation="UserByScreenName", target="someone", minutes_ago=1)
    v = view(account("a", 0, None), tasks=[ahead, half, low, done, gone, other_op])
    v.progress.rows = {
        "half": TaskProgress(
            task_id="half",
            keyword="k",
            collected=500,
            target=1000,
            status="running",
            updated_at=NOW,
        ),
        "done": TaskProgress(
            task_id="done",
            keyword="k",
            collected=1000,
            target=1000,
            status="completed",
            updated_at=NOW,
        ),
    }
    v.controls.rows = {"gone": TaskControl(task_id="gone", state="cancelled", updated_at=NOW)}
    new = task("new", 100)
    c = v.capacity(new, NOW)
    assert c.ahead == 50 + 25
    e = estimate(S, new, 1, c)
    assert e["budget"]["queued_ahead_requests"] == 75
    assert e["seconds"] > 900  # 80 requests on one account: past its first 50-request window


def test_tagged_and_disabled_accounts():
    vip = account("v", 0, None, tags=["vip"])
    off = account("o", 0, None, disabled=True, disabled_reason="x")
    plain = account("p", 0, None)
    v = view(vip, off, plain)
    assert v.capacity(task("t", 20, account_tag="vip")).accounts == 1
    assert v.capacity(task("u", 20)).accounts == 2
