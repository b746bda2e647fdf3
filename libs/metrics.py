"""Prometheus metrics of XGet: defined once here, recorded by the shared plumbing (ConsumerLoop,
Producer, XClient, WebhookSender) so a service needs at most a line to be observable.

One registry per process (prometheus_client's default one): the services of an embedded
process share it and its one `/metrics` endpoint (libs/ops_server.py); every series carries
the `service` label where it is per service. `METRIC_NAMES` lists every exported sample name;
the alert rules in infra/ are checked against it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import get_args

from prometheus_client import REGISTRY as REGISTRY  # re-exported: the process registry
from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

RECORDS_IN = Counter(
    "xget_records_in", "Records consumed, per service and topic.", ["service", "topic"]
)
RECORDS_OUT = Counter(
    "xget_records_out",
    "Records produced (acknowledged by the broker), per producing service and topic.",
    ["service", "topic"],
)
PRODUCER_REPLACEMENTS = Counter(
    "xget_producer_replacements",
    "Kafka producers rebuilt after "
    "a fatal state (the broker lost their id or sequence: a broker "
    "restart), per client.",
    ["client"],
)
RECORDS_FAILED = Counter(
    "xget_records_failed",
    "Records dead-lettered (undecodable or rejected by the handler), per service and source topic.",
    ["service", "topic"],
)
HANDLE_SECONDS = Histogram(
    "xget_handle_seconds",
    "Time to handle one consumed batch and publish its output, per service.",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
RECORD_AGE_SECONDS = Histogram(
    "xget_record_age_seconds",
    "Age of a record (now minus its Kafka timestamp) when a service handles it.",
    ["service"],
    buckets=AGE_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "xget_consumer_lag",
    "Records not yet consumed by a group: high watermark minus committed offset, per partition.",
    ["group", "topic", "partition"],
)
LAG_RATE = Gauge(
    "xget_consumer_rate",
    "Records per second a group consumed lately (`xget lag`).",
    ["group", "topic"],
)
LAG_DRAIN_SECONDS = Gauge(
    "xget_consumer_drain_seconds",
    "Seconds until the group's lag is "
    "drained at its current rate (`xget lag`; +Inf when it does not "
    "consume).",
    ["group", "topic"],
)
LAG_REPLICAS = Gauge(
    "xget_consumer_recommended_replicas",
    "Replicas that would drain the lag within the target time, capped at partitions (`xget lag`).",
    ["group", "topic"],
)
X_REQUESTS = Counter(
    "xget_x_requests",
    "X GraphQL requests by operation and outcome (ok, "
    "rate_limited, blocked, auth_failed, suspended, server_error, malformed, "
    "network_error, proxy_error).",
    ["operation", "outcome"],
)
X_REQUEST_SECONDS = Histogram(
    "xget_x_request_seconds",
    "X request latency by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "xget_webhook_deliveries",
    "Webhook deliveries by result: "
    "delivered, rejected (4xx), refused (bad URL), gave_up, stopped; "
    "each retried attempt also counts as retry.",
    ["result"],
)
WEBHOOK_SECONDS = Histogram(
    "xget_webhook_seconds", "Webhook delivery time including retries.", buckets=LATENCY_BUCKETS
)
MEDIA_BYTES_STORED = Counter(
    "xget_media_bytes_stored",
    "Media bytes uploaded to the object store (content-addressed: each content once).",
)
ACCOUNTS = Gauge(
    "xget_accounts",
    "Accounts in the pool by status (active, cooling_down, "
    "rate_limited, suspended, …), from the account-manager.",
    ["status"],
)
ACCOUNT_POOL_HEALTH = Gauge(
    "xget_account_pool_health", "Mean health score (0–1) of the accounts that are not disabled."
)
# Per proxy, from the account-manager's pool (X requests reported on account-events, and its
# own health checks). Gauges of the pool's totals, so a restarted manager carries them on.
PROXIES = Gauge(
    "xget_proxies", "Proxies by status (healthy, unchecked, dead, disabled, expired).", ["status"]
)
PROXY_REQUESTS = Gauge(
    "xget_proxy_requests",
    "X requests made through the proxy, by result (ok, failed).",
    ["proxy", "result"],
)
PROXY_SUCCESS_RATE = Gauge(
    "xget_proxy_success_rate",
    "Share of the proxy's X requests that did not fail because of it (1 with no request).",
    ["proxy"],
)
PROXY_LATENCY_MS = Gauge(
    "xget_proxy_latency_ms", "Moving average of the proxy's X request latency (ms).", ["proxy"]
)
PROXY_USABLE = Gauge(
    "xget_proxy_usable",
    "1 when the proxy may carry requests (alive, enabled, not expired).",
    ["proxy"],
)
ALERTS_FIRING = Gauge(
    "xget_alerts_firing",
    "Alerts firing in the gateway's own evaluator, by name (services/task_gateway/alerts.py).",
    ["alertname"],
)
TASKS_WITHOUT_PROGRESS = Gauge(
    "xget_tasks_without_progress",
    "Pending or running tasks that collected nothing for XGET_ALERT_TASK_STUCK_S (gateway).",
)
READY = Gauge(
    "xget_ready",
    "1 when a component of this process is ready (joined its group, serving).",
    ["component"],
)
DEPENDENCY_FAILURES = Counter(
    "xget_dependency_failures",
    "Batches a service could not finish because a dependency "
    "failed (clickhouse, object-store, kafka, http, network); the batch is retried, never "
    "dead-lettered.",
    ["service", "dependency"],
)
DEPENDENCY_DOWN = Gauge(
    "xget_dependency_down",
    "1 while a service waits for a failed dependency (its partitions paused, nothing committed).",
    ["service", "dependency"],
)


def metric_names() -> set[str]:
    """Every sample name this process can export (`_total`, `_bucket`… included)."""
    names: set[str] = set()
    for collector in (
        RECORDS_IN,
        RECORDS_OUT,
        RECORDS_FAILED,
        HANDLE_SECONDS,
        RECORD_AGE_SECONDS,
        CONSUMER_LAG,
        LAG_RATE,
        LAG_DRAIN_SECONDS,
        LAG_REPLICAS,
        X_REQUESTS,
        X_REQUEST_SECONDS,
        WEBHOOK_DELIVERIES,
        WEBHOOK_SECONDS,
        MEDIA_BYTES_STORED,
        ACCOUNTS,
        ACCOUNT_POOL_HEALTH,
        PROXIES,
        PROXY_REQUESTS,
        PROXY_SUCCESS_RATE,
        PROXY_LATENCY_MS,
        PROXY_USABLE,
        ALERTS_FIRING,
        TASKS_WITHOUT_PROGRESS,
        READY,
        DEPENDENCY_FAILURES,
        DEPENDENCY_DOWN,
    ):
        for family in collector.describe():
            name = family.name
            if family.type == "counter":
                names |= {f"{name}_total", f"{name}_created"}
            elif family.type == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
            else:
                names.add(name)
    return names


def observe_consumed(service: str, msgs: Sequence) -> None:
    """Count a consumed batch per topic; observe the age of its oldest and newest record (the
    spread that matters for "how far behind", at two observations per batch, not one each)."""
    counts: dict[str, int] = {}
    for m in msgs:
        counts[m.topic] = counts.get(m.topic, 0) + 1
    for topic, n in counts.items():
        RECORDS_IN.labels(service, topic).inc(n)
    stamps = [m.timestamp for m in (msgs[0], msgs[-1]) if m.timestamp and m.timestamp > 0]
    if stamps:
        now_ms = time.time() * 1000
        age = RECORD_AGE_SECONDS.labels(service)
        for ts in (min(stamps), max(stamps)):
            age.observe(max(0.0, (now_ms - ts) / 1000))


def set_lag(group: str, lags: dict[tuple[str, int], int]) -> None:
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(group, topic, str(partition)).set(max(0, lag))


def observe_accounts(accounts: Iterable) -> None:
    """Account pool gauges from the account-manager's pool (AccountState records)."""
    from .records.accounts import AccountStatus

    counts = dict.fromkeys(get_args(AccountStatus), 0)
    health = []
    for a in accounts:
        if getattr(a, "removed", False):
            continue
        counts[a.status] = counts.get(a.status, 0) + 1
        if a.status != "disabled":
            health.append(a.health)
    for status, n in counts.items():
        ACCOUNTS.labels(status).set(n)
    ACCOUNT_POOL_HEALTH.set(sum(health) / len(health) if health else 0.0)


def proxy_status(p, now: float) -> str:
    """healthy, unchecked, dead, disabled or expired: what an operator sees first."""
    if p.disabled:
        return "disabled"
    if p.expires_at is not None and p.expires_at.timestamp() <= now:
        return "expired"
    return p.status


def observe_proxies(proxies: Iterable) -> None:
    """Proxy gauges from the account-manager's pool (ProxyState records)."""
    now = time.time()
    counts = dict.fromkeys(("healthy", "unchecked", "dead", "disabled", "expired"), 0)
    for p in proxies:
        if getattr(p, "removed", False):
            continue
        status = proxy_status(p, now)
        counts[status] = counts.get(status, 0) + 1
        PROXY_REQUESTS.labels(p.proxy_id, "ok").set(p.requests - p.request_failures)
        PROXY_REQUESTS.labels(p.proxy_id, "failed").set(p.request_failures)
        PROXY_SUCCESS_RATE.labels(p.proxy_id).set(
            1 - p.request_failures / p.requests if p.requests else 1.0
        )
        if p.request_latency_ms is not None:
            PROXY_LATENCY_MS.labels(p.proxy_id).set(p.request_latency_ms)
        PROXY_USABLE.labels(p.proxy_id).set(1 if status in ("healthy", "unchecked") else 0)
    for status, n in counts.items():
        PROXIES.labels(status).set(n)
