"""Every page of the console, signed in as admin, in Chromium: it loads with no console error,
no uncaught exception and no failed request, axe-core finds no serious or critical
accessibility violation, and a screenshot of it is saved under test-output/console/."""

from __future__ import annotations

import re
import uuid

import pytest

from infra.service_process import wait_until

from .conftest import axe_serious, shot

pytestmark = pytest.mark.e2e


def check(w, name: str) -> list[str]:
    """Screenshot, then what is wrong with the page as it is now (problems and axe)."""
    shot(w.page, f"page-{name}")
    found = [f"{name}: {p}" for p in w.problems]
    found += [
        f"{name}: axe {v['impact']} {v['id']} ({v['help']}) at {v['nodes']}"
        for v in axe_serious(w.page)
    ]
    w.problems.clear()
    return found


def test_every_page_loads_clean_and_accessible(watched, console_stack):
    api = console_stack.api
    keyword = f"pages{uuid.uuid4().hex[:6]}"
    r = api.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": keyword,
            "required_count": 40,
            "start_time": "2026-08-01T00:00:00Z",
            "end_time": "2026-08-01T06:00:00Z",
        },
    )
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    wait_until(
        lambda: api.get(f"/api/v1/tasks/{task_id}/status").json()["status"] == "completed",
        240,
        f"task {task_id} to complete\n{console_stack.proc.tail()}",
    )
    post = api.get("/api/v1/data/tweets/search", params={"task_id": task_id, "limit": 1}).json()
    handle = post[0]["author_handle"].lstrip("@")

    w = watched()
    page = w.page
    found: list[str] = []

    w.goto("/login")
    page.locator("#login-username").wait_for()
    found += check(w, "login")
    w.sign_in("admin1")

    pages = [
        ("tweets", f"/data/tweets?task_id={task_id}", ".el-pagination__total:has-text('Total 40')"),
        ("users", f"/data/users?u={handle}", "[data-testid=profile], [data-testid=post-table] tr"),
        ("tasks", "/tasks", f"a[data-task='{task_id}']"),
        ("task-detail", f"/tasks/{task_id}", "[data-testid=detail-status]"),
        ("accounts", "/accounts", "[data-account='acc1']"),
        ("proxies", "/proxies", "[data-testid=proxy-table]"),
        ("analytics", "/analytics", "[data-testid=analytics-cards] .el-statistic"),
        ("settings", "/settings", "[data-testid=settings-table] tbody tr"),
    ]
    for name, route, ready in pages:
        w.goto(route)
        page.locator(ready).first.wait_for()
        if name == "analytics":  # the live figures and the lag sample are in
            page.locator("canvas").first.wait_for()
            page.locator("td", has_text="dedup").first.wait_for(timeout=30_000)
        found += check(w, name)

    # The task list pages with the API's total (the list's X-Total-Count header).
    tasks_total = api.get("/api/v1/tasks", params={"limit": 1}).headers["X-Total-Count"]
    assert int(tasks_total) >= 1
    w.goto("/tasks")
    total = page.locator(".el-pagination__total", has_text=re.compile(rf"^Total {tasks_total}$"))
    total.wait_for()

    # The detail drawer of a post, the new-task form, and the other Settings tabs.
    w.goto(f"/data/tweets?task_id={task_id}&has_media=true")
    page.get_by_test_id("post-table").get_by_role("button", name="Details").first.click()
    page.get_by_test_id("post-json").wait_for()
    thumb = page.get_by_test_id("media-thumb").first
    thumb.wait_for()
    wait_until(lambda: thumb.evaluate("i => i.complete && i.naturalWidth > 0"), 30, "a thumbnail")
    found += check(w, "tweet-drawer")
    w.goto("/tasks")
    page.get_by_test_id("new-task").click()
    page.get_by_test_id("task-form").wait_for()
    found += check(w, "task-form-ondemand")
    for tab in ("Scheduled", "Generic search", "KOL followings"):
        page.get_by_role("tab", name=tab).click()
        found += check(w, "task-form-" + tab.lower().replace(" ", "-"))
    page.keyboard.press("Escape")
    w.goto("/settings")
    for tab, ready in (
        ("Users and roles", "[data-testid=users-table] tbody tr"),
        ("System log", "[data-testid=log-table]"),
        ("Audit log", "[data-testid=audit-table] tbody tr"),
    ):
        page.get_by_role("tab", name=tab).click()
        page.locator(ready).first.wait_for()
        found += check(w, "settings-" + tab.split()[0].lower())

    assert found == [], "\n".join(found)
