"""One on-demand task is one connected trace: the HTTP POST at the gateway, the scheduler, the
scraper's X page requests, the parser, the dedup-counter's ClickHouse write and the reporter,
carried across Kafka by W3C trace context headers. Services run as an OS process with the file
exporter (JSON lines); the test reads the spans it wrote."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict

import pytest

from infra.service_process import ServiceProcess, wait_until
from tests.webhook_server import WebhookServer

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

SECRET = "hook-secret"
START, END = "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"


def test_one_task_is_one_connected_trace(noida, xsim, tmp_path, chdb_path):
    spans_file = tmp_path / "traces.jsonl"
    with WebhookServer(SECRET) as hook:
        settings = pipeline_settings(
            noida,
            xsim,
            tmp_path,
            chdb_path,
            trace_exporter="file",
            trace_file=str(spans_file),
            metrics_port=0,
            webhook_secret=SECRET,
            webhook_allow_hosts="127.0.0.1",
            report_max_wait_s=1.0,
            report_tick_s=0.2,
            report_media_wait_s=20,
        )
        Simulator(xsim).configure(limits={"SearchTimeline": 100_000})
        proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
        gw = Gateway(settings)
        task_id = f"tr-{uuid.uuid4().hex[:8]}"
        try:
            wait_until(lambda: proc.alive() and gw.ready(), 60, "the gateway to answer")
            r = gw.submit(
                task_id=task_id,
                keyword=f"kw{uuid.uuid4().hex[:6]}",
                required_count=100,
                start_time=START,
                end_time=END,
                callback_url=hook.url,
            )
            assert r.status_code == 200, r.text
            wait_until(
                lambda: any(
                    x.body.get("completion_status") == "completed"
                    and x.body.get("task_id") == task_id
                    for x in hook.all()
                ),
                180,
                "the completed report",
            )
        finally:
            assert proc.stop(), "the process did not stop on SIGTERM"  # flushes the spans

    spans = [json.loads(line) for line in spans_file.read_text().splitlines() if line]
    tagged = [s for s in spans if s["attributes"].get("xget.task_id") == task_id]
    trace_ids = {s["trace_id"] for s in tagged}
    assert len(trace_ids) == 1, f"the task's spans are in {len(trace_ids)} traces"
    (trace_id,) = trace_ids
    trace = [s for s in spans if s["trace_id"] == trace_id]
    ids = {s["span_id"] for s in trace}
    roots = [s for s in trace if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["POST /api/v1/tasks/ondemand"]
    assert all(s["parent_id"] in ids for s in trace if s["parent_id"] is not None), (
        "a span's parent is missing from the trace"
    )
    by_service = defaultdict(list)
    for s in trace:
        by_service[s["attributes"].get("xget.service")].append(s["name"])
    # The root is the gateway's HTTP server span (FastAPI's own); the rest name their service.
    assert roots[0]["attributes"]["http.response.status_code"] == 200
    for service in ("scheduler", "scraper", "parser", "dedup-counter", "reporter"):
        assert by_service[service], f"no span from {service}: {sorted(map(str, by_service))}"
    names = [s["name"] for s in trace]
    assert any(n == "X SearchTimeline" for n in names)
    assert any(n == "clickhouse insert" for n in names)
    x_spans = [s for s in trace if s["name"] == "X SearchTimeline"]
    assert all(s["attributes"].get("xget.account") for s in x_spans)
    # A span for every record a service handles: records from one upstream span share a
    # group span with their count, and each of them has a child span of its own.
    children = defaultdict(list)
    for s in trace:
        children[s["parent_id"]].append(s)
    groups = [s for s in trace if s["attributes"].get("messaging.batch.message_count", 1) > 1]
    assert any(g["attributes"]["xget.service"] == "dedup-counter" for g in groups)
    for g in groups:
        own = [
            c
            for c in children[g["span_id"]]
            if c["name"] == f"{g['attributes']['xget.service']} record "
            f"{g['attributes']['messaging.destination.name']}"
        ]
        assert len(own) == g["attributes"]["messaging.batch.message_count"], g["name"]
        assert len(
            {
                (
                    c["attributes"]["messaging.kafka.partition"],
                    c["attributes"]["messaging.kafka.offset"],
                )
                for c in own
            }
        ) == len(own)
        assert all(c["trace_id"] == g["trace_id"] for c in own)
    posts_seen = {
        c["attributes"].get("xget.post_id")
        for g in groups
        for c in children[g["span_id"]]
        if g["attributes"]["xget.service"] == "dedup-counter"
    }
    assert len(posts_seen - {None}) >= 100  # each stored post has its own span
    # Each media download and each webhook delivery is a span of the task's trace, with the
    # task, the post (media), the URL's host and the outcome.
    media = [s for s in trace if s["name"] == "media download"]
    assert media, "no media-download span in the task's trace"
    assert len({s["attributes"]["xget.post_id"] for s in media}) > 1
    for s in media:
        a = s["attributes"]
        assert a["xget.service"] == "media-downloader" and a["xget.task_id"] == task_id
        assert a["server.address"] and a["xget.outcome"] in {"stored", "recent", "batch_index"}
    hooks = [s for s in trace if s["name"] == "webhook POST"]
    delivered = [h for h in hooks if h["attributes"]["xget.result"] == "delivered"]
    assert delivered, "no webhook span in the task's trace"
    for h in hooks:
        a = h["attributes"]
        assert a["xget.service"] == "reporter" and a["xget.task_id"] == task_id
        assert a["server.address"] == "127.0.0.1" and a["xget.post_count"] >= 0
    assert sum(h["attributes"]["xget.post_count"] for h in delivered) == 100
    # No secret travels in a span: account tokens and the API token stay out.
    text = spans_file.read_text()
    for secret in ("tok-a1", "ct0-a1", "e2e-token", SECRET):
        assert secret not in text
