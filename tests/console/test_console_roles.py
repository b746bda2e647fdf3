"""Roles and sign-in in Chromium: a viewer sees no action button and the API refuses each
state-changing call made with the viewer's own session (403), the audit log shows those as
refused; repeated wrong passwords lock a user for the lock period, the right one included."""

from __future__ import annotations

import time
import uuid

import pytest

from infra.service_process import wait_until

from .conftest import shot

pytestmark = pytest.mark.e2e

ACTION_BUTTONS = (
    "New task",
    "Cancel",
    "Pause",
    "Resume",
    "Priority",
    "Frequency",
    "Add account",
    "Import",
    "Test",
    "Refresh login",
    "Disable",
    "Enable",
    "Delete",
    "Add proxy",
    "Replay",
    "Add user",
)


def visible_actions(page) -> list[str]:
    names = page.locator("button:visible").all_inner_texts()
    return sorted({n.strip() for n in names if n.strip() in ACTION_BUTTONS})


def test_viewer_sees_no_action_and_every_change_is_refused(watched, console_stack):
    api = console_stack.api
    uid = uuid.uuid4().hex[:6]
    # Something to act on: a task (created with the token) and the accounts of the stack.
    r = api.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": f"viewer{uid}",
            "required_count": 20,
            "start_time": "2026-08-01T00:00:00Z",
            "end_time": "2026-08-01T06:00:00Z",
        },
    )
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]

    w = watched()
    page = w.page
    w.sign_in("viewer1")
    assert page.get_by_test_id("role").inner_text() == "viewer"
    assert page.get_by_role("menuitem", name="Settings").count() == 0
    for route, ready in (
        ("/tasks", f"a[data-task='{task_id}']"),
        (f"/tasks/{task_id}", "[data-testid=detail-status]"),
        ("/accounts", "[data-account='acc1']"),
        ("/proxies", "[data-testid=proxy-table]"),
        ("/data/tweets", "[data-testid=pager]"),
        ("/analytics", "[data-testid=analytics-cards]"),
    ):
        w.goto(route)
        page.locator(ready).first.wait_for()
        assert visible_actions(page) == [], route
        shot(page, f"viewer-{route.strip('/').replace('/', '-') or 'home'}")
    page.goto(f"{console_stack.console}#/settings")  # not for a viewer: sent back to the data
    page.get_by_test_id("pager").wait_for()
    assert page.evaluate("() => location.hash").startswith("#/data/tweets")

    # The API, with the viewer's session and its valid CSRF token: 403 for every change.
    csrf = w.csrf()
    req = w.context.request
    base = console_stack.base + "/api/v1"
    calls = [
        (
            "POST",
            "/tasks/ondemand",
            {
                "keyword": "x",
                "start_time": "2026-08-01T00:00:00Z",
                "end_time": "2026-08-02T00:00:00Z",
            },
        ),
        ("POST", "/tasks/scheduled", {"keyword": "x", "frequency": "daily"}),
        ("POST", f"/tasks/{task_id}/cancel", None),
        ("PATCH", f"/tasks/{task_id}", {"action": "pause"}),
        ("POST", "/admin/accounts/acc1/disable", None),
        ("POST", "/admin/accounts/acc1/test", None),
        ("DELETE", "/admin/accounts/acc1", None),
        ("POST", "/admin/accounts", {"username": "mallory", "auth_token": "a", "ct0": "b"}),
        ("POST", "/admin/proxies", {"url": "http://10.0.0.9:3128"}),
        (
            "POST",
            "/admin/users",
            {"username": "mallory", "role": "admin", "password": "long-enough-password"},
        ),
    ]
    for method, path, body in calls:
        r = req.fetch(base + path, method=method, headers={"X-CSRF-Token": csrf}, data=body)
        assert r.status == 403, (method, path, r.status, r.text())
    # Reads a viewer may do still answer.
    assert req.get(base + "/tasks").status == 200
    assert req.get(base + "/admin/users").status == 403  # users are for admins

    # Nothing happened: the task runs on, acc1 is enabled, no mallory.
    assert api.get(f"/api/v1/tasks/{task_id}/status").json()["status"] != "cancelled"
    assert api.get("/api/v1/admin/accounts/acc1").json()["enabled"] is True
    assert "mallory" not in {u["username"] for u in api.get("/api/v1/admin/users").json()["users"]}

    # The audit log shows each of them as refused, none as done.
    def viewer_entries():
        items = api.get("/api/v1/admin/audit", params={"limit": 500}).json()["items"]
        return [a for a in items if a["actor"] == "viewer1" and "/auth/" not in a["path"]]

    entries = wait_until(
        lambda: len(v := viewer_entries()) >= len(calls) and v, 30, "the viewer's audit entries"
    )
    assert {a["result"] for a in entries} == {"refused"}
    # The refused calls were made on purpose; the pages themselves had no problem.
    assert [p for p in w.problems if "403" not in p] == []


def test_wrong_passwords_lock_the_user_for_the_lock_period(watched, console_stack):
    name = f"locky{uuid.uuid4().hex[:6]}"
    password = console_stack.add_user(name, "operator")
    limit = console_stack.settings.console_lockout_failures
    lock_s = console_stack.settings.console_lockout_s
    w = watched()
    page = w.page
    w.goto("/login")
    alert = page.get_by_role("alert")
    for attempt in range(1, limit + 1):
        page.fill("#login-username", name)
        page.fill("#login-password", "not-the-password")
        with page.expect_response(lambda r: r.url.endswith("/auth/login")) as answer:
            page.get_by_role("button", name="Sign in").click()
        if attempt < limit:
            assert answer.value.status == 401
            alert.filter(has_text="Wrong username or password").wait_for()
        else:  # the limit-th wrong password locks the user
            assert answer.value.status == 429
            alert.filter(has_text="Too many wrong passwords").wait_for()
    locked_at = time.monotonic()
    # The right password now: refused while the lock lasts.
    page.fill("#login-password", password)
    with page.expect_response(lambda r: r.url.endswith("/auth/login")) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 429
    alert.filter(has_text="Too many wrong passwords").wait_for()
    assert page.evaluate("() => location.hash").startswith("#/login")
    shot(page, "login-locked")
    assert console_stack.login(name, password).status_code == 429
    # After the lock period (XGET_CONSOLE_LOCKOUT_S, short in this stack) the right password
    # signs in.
    wait_until(
        lambda: console_stack.login(name, password).status_code == 200,
        lock_s + 30,
        "the lock to end",
        interval=2,
    )
    assert time.monotonic() - locked_at >= lock_s - 2
