"""Operations, end to end: the process's /metrics parses as Prometheus text and the named
counters move while a task runs; /livez and /readyz answer; the consumer groups the services
really commit under are the ones the k8s ScaledObjects scale on."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.local import free_port
from infra.service_process import ServiceProcess, wait_until
from infra.workloads import consumer_groups
from tests.webhook_server import WebhookServer

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

SECRET = "hook-secret"
START, END = "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as (name, sorted labels) → value; raises if it does not parse."""
    r = httpx.get(f"{base}/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_metrics_move_while_a_task_runs(noida, xsim, tmp_path, chdb_path):
    port = free_port()
    with WebhookServer(SECRET, fail_times=1) as hook:
        settings = pipeline_settings(
            noida,
            xsim,
            tmp_path,
            chdb_path,
            metrics_port=port,
            webhook_secret=SECRET,
            webhook_allow_hosts="127.0.0.1",
            webhook_backoff_base_s=0.05,
            webhook_backoff_max_s=0.2,
            report_max_wait_s=1.0,
            report_tick_s=0.2,
            report_media_wait_s=20,
        )
        Simulator(xsim).configure(limits={"SearchTimeline": 100_000})
        base = f"http://127.0.0.1:{port}"
        prefix = settings.topic_prefix
        proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
        gw = Gateway(settings)
        try:
            wait_until(lambda: proc.alive() and gw.ready(), 60, "the gateway to answer")
            wait_until(
                lambda: httpx.get(f"{base}/readyz").status_code == 200,
                60,
                "every consumer group of the process to be ready",
            )
            assert httpx.get(f"{base}/livez").status_code == 200
            assert httpx.get(f"{base}/nope").status_code == 404
            before = scrape(base)
            task_id = f"met-{uuid.uuid4().hex[:8]}"
            r = gw.submit(
                task_id=task_id,
                keyword=f"kw{uuid.uuid4().hex[:6]}",
                required_count=200,
                start_time=START,
                end_time=END,
                callback_url=hook.url,
            )
            assert r.status_code == 200, r.text
            wait_until(
                lambda: any(
                    x.body.get("completion_status") == "completed"
                    and x.body.get("task_id") == task_id
                    and x.status == 200
                    for x in hook.all()
                ),
                180,
                "the completed report",
            )
            raw_t, posts_t = f"{prefix}raw-pages", f"{prefix}posts"
            jobs_t = f"{prefix}search-jobs"

            def drained():
                # Records after the target (the slice's end marker) may still be on their way
                # when the last report goes out: wait until every hop has read what it got.
                a = scrape(base)

                def d(n, **ls):
                    return total(a, n, **ls) - total(before, n, **ls)

                return (
                    a
                    if (
                        d("xget_records_in_total", service="scraper", topic=jobs_t)
                        == d("xget_records_out_total", service="task-gateway", topic=jobs_t)
                        and d("xget_records_in_total", service="parser", topic=raw_t)
                        == d("xget_records_out_total", service="scraper", topic=raw_t)
                        and d("xget_records_in_total", service="dedup-counter", topic=posts_t)
                        == d("xget_records_out_total", service="parser", topic=posts_t)
                    )
                    else None
                )

            after = wait_until(drained, 30, "every hop to have read what it was sent")
        finally:
            proc.stop()

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    raw, posts, jobs = f"{prefix}raw-pages", f"{prefix}posts", f"{prefix}search-jobs"
    # The scraper (its own poll loop, not a ConsumerLoop) counts the slices it took in.
    assert moved("xget_records_in_total", service="scraper", topic=jobs) > 0
    assert moved("xget_records_in_total", service="scraper", topic=jobs) == moved(
        "xget_records_out_total", service="task-gateway", topic=jobs
    )
    assert moved("xget_records_out_total", service="scraper", topic=raw) > 0
    assert moved("xget_records_in_total", service="parser", topic=raw) == moved(
        "xget_records_out_total", service="scraper", topic=raw
    )
    assert moved("xget_records_out_total", service="parser", topic=posts) >= 200
    assert moved("xget_records_in_total", service="dedup-counter", topic=posts) == moved(
        "xget_records_out_total", service="parser", topic=posts
    )
    # Every X page is one raw page; a slice that reached its target also ends with a marker
    # page that asked X nothing.
    assert (
        0
        < moved("xget_x_requests_total", operation="SearchTimeline", outcome="ok")
        <= moved("xget_records_out_total", service="scraper", topic=raw)
    )
    assert moved("xget_handle_seconds_count", service="dedup-counter") > 0
    assert moved("xget_record_age_seconds_count", service="parser") > 0
    assert (
        moved("xget_webhook_deliveries_total", result="delivered") >= 2
    )  # 200 posts, batches of 100
    assert moved("xget_webhook_deliveries_total", result="retry") == 1  # the one failed attempt
    assert moved("xget_media_bytes_stored_total") > 0  # the fixture's posts carry images
    assert total(after, "xget_records_failed_total") == 0
    # Lag gauges exist per partition of every input of the parser, and it drained.
    parser_lag = [
        (ls, v)
        for (n, ls), v in after.items()
        if n == "xget_consumer_lag" and ("group", f"{prefix}parser") in ls
    ]
    assert len(parser_lag) == 12 and all(v >= 0 for _, v in parser_lag)
    # … and of the hand-rolled consumers: the scraper's and the kol-worker's, which are also
    # part of readiness (ready = their consumer holds its partitions).
    for group, spec_topic, parts in (
        ("scraper", jobs, 12),
        ("kol-worker", f"{prefix}kol-commands", 3),
    ):
        lag_series = [
            (ls, v)
            for (n, ls), v in after.items()
            if n == "xget_consumer_lag"
            and ("group", prefix + group) in ls
            and ("topic", spec_topic) in ls
        ]
        assert len(lag_series) == parts and all(v == 0 for _, v in lag_series), group
        assert total(after, "xget_ready", component=prefix + group) == 1, group
    # The accounts gauge comes from the account-manager of the same process.
    assert total(after, "xget_accounts", status="active") == 3

    # The groups that committed on the broker are exactly those infra/workloads.py declares,
    # on the topics it declares (the ScaledObjects are generated from that table).
    committed = asyncio.run(committed_groups(settings.kafka_bootstrap, prefix))
    declared = consumer_groups()
    for group, topics in committed.items():
        name = group[len(prefix) :]
        assert name in declared, f"{group} is not in infra/workloads.py"
        assert topics <= {prefix + s.name for s in declared[name].inputs}, group
    for name in (
        "scheduler",
        "scraper",
        "parser",
        "dedup-counter",
        "reporter",
        "reporter-media",
        "media-downloader",
        "account-manager",
    ):
        assert prefix + name in committed, f"{name} committed nothing"


async def committed_groups(bootstrap: str, prefix: str) -> dict[str, set[str]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = [g for g, _ in await admin.list_consumer_groups() if g.startswith(prefix)]
        out = {}
        for g in groups:
            offsets = await admin.list_consumer_group_offsets(g)
            out[g] = {tp.topic for tp, meta in offsets.items() if meta.offset >= 0}
        return out
    finally:
        await admin.close()
