"""Alerts that reach a person, end to end: each condition is provoked against the simulator
and the real local parts, and arrives at a webhook receiver through XGet's own alert path
(the gateway's evaluator) as Alertmanager's webhook JSON, signed, and in
GET /api/v1/admin/alerts, each naming what to do; resolved ones arrive too."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from infra.service_process import ServiceProcess, wait_until
from libs.topics import TASK_COMMANDS, topic_name
from tests.webhook_server import WebhookServer

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

SECRET = "alert-hook-secret"
START, END = "2026-10-01T00:00:00Z", "2026-10-03T00:00:00Z"


def delivered(hook: WebhookServer, name: str, status: str, **labels) -> list[dict]:
    """Alerts of `name` delivered with `status` (and these labels), from signed requests."""
    out = []
    for r in hook.all():
        if not r.signature_ok:
            continue
        for a in r.body.get("alerts", []):
            ls = a["labels"]
            if ls["alertname"] == name and a["status"] == status:
                if all(ls.get(k) == v for k, v in labels.items()):
                    out.append(a)
    return out


def admin_alerts(gw: Gateway) -> dict:
    r = gw.client.get("/api/v1/admin/alerts")
    r.raise_for_status()
    return r.json()


def firing_in_api(gw: Gateway, name: str, **labels) -> dict | None:
    for a in admin_alerts(gw)["firing"]:
        if a["name"] == name and all(a["labels"].get(k) == v for k, v in labels.items()):
            return a
    return None


def publish_garbage(settings, topic: str) -> None:
    async def go() -> None:
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await p.start()
        try:
            await p.send_and_wait(topic, b"{not json", key=b"garbage")
        finally:
            await p.stop()

    asyncio.run(go())


def test_each_alert_condition_reaches_the_webhook_and_the_api(noida, xsim, tmp_path, chdb_path):
    uid = uuid.uuid4().hex[:6]
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    tokens = [f"tok-al{i}-{uid}" for i in range(3)]
    with WebhookServer(SECRET) as hook:
        settings = pipeline_settings(
            noida,
            xsim,
            tmp_path,
            chdb_path,
            x_accounts=",".join(f"al{i}{uid}:{t}:ct0-{i}" for i, t in enumerate(tokens)),
            webhook_secret=SECRET,
            alert_webhook_url=hook.url,
            alert_eval_interval_s=1.0,
            alert_for_s=0,
            alert_task_stuck_s=6,
            alert_consumer_lag_max=2,
            alert_dead_letters_window_s=20,
            alert_error_window_s=15,
            alert_error_min_requests=3,
            alert_error_rate_max=0.2,
            alert_min_usable_accounts=2,
            alert_healthy_accounts_min_share=0.5,
        )
        gw = Gateway(settings)
        # Phase 1: no parser and no counter: raw pages pile up (the parser group's lag), the
        # task collects nothing (stuck), and a record nobody can read is dead-lettered.
        front = ServiceProcess(
            "xget-front", ["task-gateway", "scraper", "account-manager"], settings, tmp_path
        ).start()
        back = None
        try:
            wait_until(lambda: front.alive() and gw.ready(), 60, f"the gateway\n{front.tail()}")
            r = gw.submit(
                keyword=f"alerts{uid}", required_count=100, start_time=START, end_time=END
            )
            assert r.status_code == 200, r.text
            task_id = r.json()["task_id"]
            publish_garbage(settings, topic_name(TASK_COMMANDS, settings.topic_prefix))

            lag = {"group": "parser", "topic": "raw-pages"}
            wait_until(
                lambda: delivered(hook, "XGetConsumerLag", "firing", **lag),
                90,
                f"the parser's lag alert\n{front.tail()}",
            )
            wait_until(
                lambda: delivered(hook, "XGetTaskStuck", "firing", task_id=task_id),
                60,
                "the stuck task alert",
            )
            wait_until(
                lambda: delivered(hook, "XGetDeadLetters", "firing"), 60, "the dead-letter alert"
            )
            for name, labels in (
                ("XGetConsumerLag", lag),
                ("XGetTaskStuck", {"task_id": task_id}),
                ("XGetDeadLetters", {}),
            ):
                shown = wait_until(lambda: firing_in_api(gw, name, **labels), 10, name)
                assert shown["action"] and shown["summary"], shown
            stuck = delivered(hook, "XGetTaskStuck", "firing", task_id=task_id)[0]
            assert f"/api/v1/tasks/{task_id}" in stuck["annotations"]["action"]
            assert (
                "xget lag --group parser"
                in delivered(hook, "XGetConsumerLag", "firing")[0]["annotations"]["action"]
            )
            assert (
                "xget dead-letters"
                in delivered(hook, "XGetDeadLetters", "firing")[0]["annotations"]["action"]
            )
            # Nothing about the accounts yet: all three are healthy.
            assert not delivered(hook, "XGetAccountShortage", "firing")

            # Phase 2: the parser and counter start: the lag drains, the task completes, and
            # the dead letter leaves its window: each alert is delivered resolved, once.
            back = ServiceProcess("xget-back", ["parser", "dedup-counter"], settings, tmp_path)
            back.start()
            wait_until(
                lambda: gw.status(task_id)["status"] == "completed",
                120,
                f"the task to complete\n{back.tail()}",
            )
            for name, labels in (
                ("XGetConsumerLag", lag),
                ("XGetTaskStuck", {"task_id": task_id}),
                ("XGetDeadLetters", {}),
            ):
                wait_until(
                    lambda: delivered(hook, name, "resolved", **labels),
                    60,
                    f"{name} resolved",
                )
            got = admin_alerts(gw)
            assert {a["name"] for a in got["recent"]} >= {
                "XGetConsumerLag",
                "XGetTaskStuck",
                "XGetDeadLetters",
            }
            assert len(delivered(hook, "XGetTaskStuck", "firing", task_id=task_id)) == 1

            # Phase 3: X suspends every account (each is suspended by its first request, and
            # the page moves to the next one): no healthy account (< 50%), none usable (< 2),
            # and every request of the window fails.
            for t in tokens:
                sim.client.post(
                    "/_sim/faults", json={"kind": "suspended", "account": t}
                ).raise_for_status()
            r = gw.submit(
                keyword=f"alerts2{uid}", required_count=100, start_time=START, end_time=END
            )
            assert r.status_code == 200, r.text
            for name in ("XGetHealthyAccountsLow", "XGetAccountShortage", "XGetXErrorRate"):
                wait_until(
                    lambda: delivered(hook, name, "firing"),
                    90,
                    f"{name}\n{front.tail()}",
                )
                assert firing_in_api(gw, name) or delivered(hook, name, "resolved")
            short = delivered(hook, "XGetAccountShortage", "firing")[0]
            assert "xget accounts" in short["annotations"]["action"]
            assert short["labels"]["severity"] == "warning"
        finally:
            sim.client.delete("/_sim/faults")
            if back is not None:
                back.stop()
            front.stop()
        # The receiver only ever got signed Alertmanager bodies.
        assert hook.all() and all(r.signature_ok for r in hook.all())
        assert all(r.body.get("version") == "4" and r.body["receiver"] for r in hook.all())
