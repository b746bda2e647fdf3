"""A batch the client's webhook refused is dead-lettered, the task's page shows it so, and
its Replay button delivers it (same batch id) once the webhook accepts again."""

from __future__ import annotations

import uuid

import pytest

from tests.webhook_server import WebhookServer

from .conftest import shot

pytestmark = pytest.mark.e2e


def test_dead_lettered_batch_replayed_from_the_task_page(watched, console_stack):
    api = console_stack.api
    secret = console_stack.settings.webhook_secret.get_secret_value()
    with WebhookServer(secret) as hook:
        hook.fail_status = 400  # a 4xx other than 408/429 is final: dead-lettered at once
        r = api.post(
            "/api/v1/tasks/ondemand",
            json={
                "keyword": f"replay{uuid.uuid4().hex[:6]}",
                "required_count": 20,
                "start_time": "2026-08-01T00:00:00Z",
                "end_time": "2026-08-01T06:00:00Z",
                "callback_url": hook.url,
            },
        )
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]

        w = watched()
        page = w.page
        w.sign_in("oper1")
        w.goto(f"/tasks/{task_id}")
        batches = page.get_by_test_id("batches")
        batches.locator("[data-delivery='dead_lettered']").first.wait_for(timeout=180_000)
        assert len(hook.all()) == 1 and hook.accepted() == []
        shot(page, "replay-01-dead-lettered")

        hook.fail_status = None  # the client is back
        batches.get_by_test_id("replay-batch").first.click()
        page.locator(".el-message-box").get_by_role("button", name="Yes").click()
        batches.locator("[data-delivery='delivered']").first.wait_for(timeout=120_000)
        shot(page, "replay-02-delivered")

        got = hook.accepted()
        assert len(got) == 1 and got[0].signature_ok
        listed = api.get(f"/api/v1/tasks/{task_id}/batches").json()
        assert listed["states"] == {"delivered": 1}
        assert got[0].idempotency_key == listed["items"][0]["batch_id"]
        assert len(got[0].body["post_ids"]) == 20
    assert w.problems == []
