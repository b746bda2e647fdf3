"""An admin's day in the console, in Chromium against the running stack and the X simulator:
sign in, create an on-demand task through the form, watch it complete without a reload, find
its posts in Tweet search, open one with a media thumbnail, export CSV with exactly the API's
total of rows, cancel a second task, disable and re-enable an account; then the API 422 shown
on the field it names."""

from __future__ import annotations

import csv
import uuid

import pytest
from playwright.sync_api import expect

from infra.service_process import wait_until

from .conftest import shot

pytestmark = pytest.mark.e2e

# The simulator's corpus: 60 posts an hour per keyword, a fifth of them with media.
START, END = "2026-08-01 00:00:00", "2026-08-01 06:00:00"
WANTED = 60


def row(page, task_id: str):
    return page.locator(f"tr:has(a[data-task='{task_id}'])").first


def create_task(page, keyword: str, start: str, end: str, count: int) -> str:
    """Fill and submit the on-demand form; the task id from the API's answer."""
    page.get_by_test_id("new-task").click()
    form = page.get_by_test_id("task-form")
    form.get_by_test_id("t-keyword").fill(keyword)
    for label, value in (("Start time", start), ("End time", end)):
        box = form.get_by_label(label)
        box.fill(value)
        box.press("Enter")
    count_box = form.locator("[data-field=required_count] input")
    count_box.fill(str(count))
    count_box.press("Tab")
    with page.expect_response(
        lambda r: r.url.endswith("/api/v1/tasks/ondemand") and r.request.method == "POST"
    ) as created:
        page.get_by_test_id("t-submit").click()
    answer = created.value
    assert answer.status == 200, answer.text()
    body = answer.json()
    return body["task_id"]


def test_admin_journey(watched, console_stack):
    uid = uuid.uuid4().hex[:6]
    keyword = f"journey{uid}"
    w = watched()
    page = w.page
    w.sign_in("admin1")

    # --- create through the form, watch it complete with no reload ------------------------------
    w.goto("/tasks")
    page.evaluate("() => { window.__sameDocument = true }")  # lost on any reload
    task_id = create_task(page, keyword, START, END, WANTED)
    sent = console_stack.api.get(f"/api/v1/tasks/{task_id}").json()["task"]
    assert (sent["keyword"], sent["required_count"]) == (keyword, WANTED)
    assert sent["start_time"].startswith("2026-08-01T00:00:00") and sent["end_time"].startswith(
        "2026-08-01T06:00:00"
    )
    row(page, task_id).wait_for()
    row(page, task_id).locator("[data-status='completed']").wait_for(timeout=240_000)
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
    shot(page, "journey-01-task-completed")

    # --- the task's page: its slice and its batch, delivered ------------------------------------
    row(page, task_id).locator(f"a[data-task='{task_id}']").click()
    page.get_by_test_id("slices").locator("td", has_text="target reached").first.wait_for()
    page.get_by_test_id("batches").locator("[data-delivery='delivered']").first.wait_for(
        timeout=90_000
    )
    shot(page, "journey-02-task-page")

    # --- its posts in Tweet search (linked from the task) ----------------------------------------
    def api_total(**filters) -> int:
        r = console_stack.api.get("/api/v1/data/tweets/search", params={**filters, "limit": 1})
        assert r.status_code == 200, r.text
        return int(r.headers["X-Total-Count"])

    total = api_total(task_id=task_id)
    assert total == WANTED
    page.get_by_test_id("task-posts").click()
    assert page.get_by_test_id("f-task").input_value() == task_id
    page.locator(".el-pagination__total", has_text=f"Total {total}").wait_for()

    # --- one with a media thumbnail --------------------------------------------------------------
    media_box = page.get_by_role("combobox", name="Has media")
    page.locator(".el-select", has=media_box).click()
    page.get_by_role("option", name="with media").click()
    page.get_by_test_id("search").click()
    media_total = api_total(task_id=task_id, has_media="true")
    assert 0 < media_total < total
    page.locator(".el-pagination__total", has_text=f"Total {media_total}").wait_for()
    page.get_by_test_id("post-table").get_by_role("button", name="Details").first.click()
    drawer = page.locator(".el-drawer")
    drawer.get_by_test_id("post-json").wait_for()
    x_link = drawer.get_by_test_id("x-link")
    assert x_link.get_attribute("href").startswith("https://x.com/")
    thumb = drawer.get_by_test_id("media-thumb").first
    thumb.wait_for()
    wait_until(
        lambda: thumb.evaluate("img => img.complete && img.naturalWidth > 0"),
        30,
        "the media thumbnail to load through the gateway",
    )
    assert "/api/v1/data/media/" in thumb.get_attribute("src")
    shot(page, "journey-03-post-drawer")
    page.keyboard.press("Escape")

    # --- export CSV of the current filter: exactly the API's total -------------------------------
    page.get_by_role("button", name="Reset").click()  # every filter cleared
    page.get_by_test_id("f-task").fill(task_id)
    page.get_by_test_id("search").click()
    page.locator(".el-pagination__total", has_text=f"Total {total}").wait_for()
    with page.expect_download(timeout=60_000) as dl:
        page.get_by_test_id("export-csv").click()
    with open(dl.value.path(), encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == total
    listed = console_stack.api.get(
        "/api/v1/data/tweets/search", params={"task_id": task_id, "limit": 1000}
    ).json()
    assert {r["post_id"] for r in rows} == {p["post_id"] for p in listed}

    # --- cancel a second task (a long one) -------------------------------------------------------
    w.goto("/tasks")
    long_id = create_task(page, f"long{uid}", "2026-06-01 00:00:00", "2026-07-31 00:00:00", 0)
    row(page, long_id).get_by_test_id("cancel-task").click()
    page.locator(".el-message-box").get_by_role("button", name="Yes").click()
    row(page, long_id).locator("[data-status='cancelled']").wait_for(timeout=60_000)
    assert console_stack.api.get(f"/api/v1/tasks/{long_id}/status").json()["status"] == "cancelled"
    shot(page, "journey-04-task-cancelled")

    # --- disable and re-enable an account --------------------------------------------------------
    w.goto("/accounts")
    acc = page.locator("tr:has([data-account='acc1'])").first
    acc.get_by_test_id("disable-account").click()
    acc.get_by_test_id("account-disabled").wait_for(timeout=60_000)
    assert console_stack.api.get("/api/v1/admin/accounts/acc1").json()["enabled"] is False
    shot(page, "journey-05-account-disabled")
    acc.get_by_test_id("enable-account").click()
    acc.get_by_test_id("disable-account").wait_for(timeout=60_000)
    assert console_stack.api.get("/api/v1/admin/accounts/acc1").json()["enabled"] is True

    # --- the audit log has the admin's actions, done ----------------------------------------------
    audit = console_stack.api.get("/api/v1/admin/audit", params={"limit": 200}).json()["items"]
    mine = [a for a in audit if a["actor"] == "admin1" and a["result"] == "done"]
    done = " ".join(f"{a['action']} {a['target']}" for a in mine)
    for what in ("tasks/ondemand", f"task_id={long_id}", "disable", "enable"):
        assert what in done, (what, done)
    w.goto("/settings")
    page.get_by_role("tab", name="Audit log").click()
    page.get_by_test_id("audit-table").locator("td", has_text="admin1").first.wait_for()
    shot(page, "journey-06-audit-log")

    assert w.problems == []


def test_api_422_shows_on_the_named_field(watched, console_stack):
    w = watched()
    page = w.page
    w.sign_in("oper1")
    w.goto("/tasks")
    page.get_by_test_id("new-task").click()
    form = page.get_by_test_id("task-form")
    form.get_by_test_id("t-keyword").fill(f"bad{uuid.uuid4().hex[:6]}")
    for label, value in (
        ("Start time", "2026-08-02 00:00:00"),
        ("End time", "2026-08-01 00:00:00"),
    ):
        box = form.get_by_label(label)
        box.fill(value)
        box.press("Enter")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/tasks/ondemand")) as answer:
        page.get_by_test_id("t-submit").click()
    assert answer.value.status == 422
    end_error = form.locator("[data-field=end_time] .el-form-item__error")
    end_error.wait_for()
    assert "end_time must be after start_time" in end_error.inner_text()
    assert form.locator("[data-field=start_time] .el-form-item__error").count() == 0
    shot(page, "form-error-end-time")

    # a nested field: filters.lang
    for label, value in (
        ("Start time", "2026-08-01 00:00:00"),
        ("End time", "2026-08-02 00:00:00"),
    ):
        box = form.get_by_label(label)
        box.fill(value)
        box.press("Enter")
    form.get_by_test_id("t-lang").fill("English!")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/tasks/ondemand")) as answer:
        page.get_by_test_id("t-submit").click()
    assert answer.value.status == 422
    lang_error = form.locator("[data-field='filters.lang'] .el-form-item__error")
    lang_error.wait_for()
    assert "lang" in lang_error.inner_text().lower()
    fields = [d["field"] for d in answer.value.json()["detail"]]
    assert fields == ["filters.lang"], answer.value.text()
    # the end_time message is gone (once its leave transition ends)
    expect(form.locator("[data-field=end_time] .el-form-item__error")).to_have_count(0)
    # the two refused submissions are the only failed requests
    assert [p for p in w.problems if "/api/v1/tasks/ondemand" not in p] == []
