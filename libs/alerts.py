"""Alert conditions and their life cycle, as plain code: facts in, alerts out.

The same conditions as the Prometheus rules in infra/prometheus/alerts.yml (same alert names,
the same XGET_ALERT_* thresholds as their defaults), judged from XGet's own state so an
operator without Prometheus still gets them (the gateway's evaluator,
services/task_gateway/alerts.py, gathers the facts and delivers). The design's conditions
("监控和告警系统"): healthy accounts under a share of the pool, X error rate over a share, fewer
than N usable accounts; the same for proxies; plus consumer lag, dead letters and a task
stuck without progress.

A condition that holds becomes `pending`, then `firing` once it held XGET_ALERT_FOR_S; a
firing alert whose condition no longer holds is `resolved`. Each firing and resolved alert is
delivered once, as Alertmanager's webhook JSON (one receiver takes both paths).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from libs.records.accounts import PROXY_FAULTS, AccountState, ProxyState
from libs.settings import Settings

HEALTHY_ACCOUNT = ("active", "rate_limited")  # can take a lease (a rate limit only waits)
NOT_AN_ERROR = ("ok", "rate_limited")  # a 429 is the budget running out, not a failure
__all__ = [
    "NOT_AN_ERROR",
    "PROXY_FAULTS",
    "AlertBook",
    "Facts",
    "Finding",
    "evaluate",
    "webhook_body",
]


@dataclass
class Facts:
    """What the evaluator knows at one moment."""

    now: float
    accounts: list[AccountState]
    proxies: list[ProxyState]
    x_requests: int = 0  # in the error window
    x_errors: int = 0
    proxy_requests: int = 0  # requests made through a proxy, in the error window
    proxy_errors: int = 0
    lags: dict[tuple[str, str], int] = field(default_factory=dict)  # (group, topic) → lag
    dead_letters: int = 0  # new in the dead-letter window
    stuck_tasks: dict[str, float] = field(default_factory=dict)  # task id → s without progress


@dataclass
class Finding:
    """A condition that holds now."""

    name: str
    severity: str
    summary: str
    action: str
    value: float
    threshold: float
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        key = self.name + "".join(f"|{k}={v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def evaluate(s: Settings, f: Facts) -> list[Finding]:
    """Every condition that holds, each naming what to do."""
    out: list[Finding] = []
    pool = [a for a in f.accounts if not a.removed and a.status != "disabled"]
    healthy = [a for a in pool if a.status in HEALTHY_ACCOUNT]
    if pool and len(healthy) / len(pool) < s.alert_healthy_accounts_min_share:
        out.append(
            Finding(
                "XGetHealthyAccountsLow",
                "critical",
                f"only {len(healthy)} of {len(pool)} accounts are healthy "
                f"({len(healthy) / len(pool):.0%} < {s.alert_healthy_accounts_min_share:.0%})",
                "See why in `xget accounts list` (status and reason): re-login accounts that "
                "need it (`xget accounts login ID`), replace suspended ones, check their proxies.",
                len(healthy) / len(pool),
                s.alert_healthy_accounts_min_share,
            )
        )
    if len(healthy) < s.alert_min_usable_accounts:
        out.append(
            Finding(
                "XGetAccountShortage",
                "warning",
                f"only {len(healthy)} usable X accounts (fewer than "
                f"{s.alert_min_usable_accounts}): tasks slow down or wait for accounts",
                "Add accounts (`xget accounts add` / `import`) or bring back disabled, "
                "suspended or logged-out ones (`xget accounts list`).",
                len(healthy),
                s.alert_min_usable_accounts,
            )
        )
    if f.x_requests >= s.alert_error_min_requests:
        rate = f.x_errors / f.x_requests
        if rate > s.alert_error_rate_max:
            out.append(
                Finding(
                    "XGetXErrorRate",
                    "warning",
                    f"{rate:.0%} of {f.x_requests} X requests failed in the last "
                    f"{s.alert_error_window_s:.0f} s (more than {s.alert_error_rate_max:.0%})",
                    "Look at the accounts' last errors (`xget accounts list`) and the "
                    "proxies' (`xget proxies list`): X may be blocking them, cookies may have "
                    "expired, or X changed its API (check the parser's dead letters).",
                    rate,
                    s.alert_error_rate_max,
                )
            )
    proxies = [p for p in f.proxies if not p.removed and not p.disabled]
    if proxies:
        usable = [p for p in proxies if p.usable(f.now)]
        share = len(usable) / len(proxies)
        if share < s.alert_healthy_proxies_min_share:
            out.append(
                Finding(
                    "XGetHealthyProxiesLow",
                    "critical",
                    f"only {len(usable)} of {len(proxies)} enabled proxies are usable "
                    f"({share:.0%} < {s.alert_healthy_proxies_min_share:.0%})",
                    "Check the dead and expired proxies (`xget proxies list`: status, last "
                    "error, expires_at); renew them with their provider or add new ones "
                    "(`xget proxies add`).",
                    share,
                    s.alert_healthy_proxies_min_share,
                )
            )
        if len(usable) < s.alert_min_usable_proxies:
            out.append(
                Finding(
                    "XGetProxyShortage",
                    "critical",
                    f"only {len(usable)} usable proxies (fewer than "
                    f"{s.alert_min_usable_proxies}): accounts on a proxy get no lease",
                    "Add proxies (`xget proxies add URL`), enable disabled ones "
                    "(`xget proxies enable ID`) or renew expired ones.",
                    len(usable),
                    s.alert_min_usable_proxies,
                )
            )
    if f.proxy_requests >= s.alert_error_min_requests:
        rate = f.proxy_errors / f.proxy_requests
        if rate > s.alert_proxy_error_rate_max:
            out.append(
                Finding(
                    "XGetProxyErrorRate",
                    "warning",
                    f"{rate:.0%} of {f.proxy_requests} requests through proxies failed "
                    f"because of the proxy (more than {s.alert_proxy_error_rate_max:.0%})",
                    "Find the failing proxies (`xget proxies list`: REQ OK%) and disable "
                    "them (`xget proxies disable ID`) or ask their provider.",
                    rate,
                    s.alert_proxy_error_rate_max,
                )
            )
    for (group, topic), lag in sorted(f.lags.items()):
        if lag > s.alert_consumer_lag_max:
            out.append(
                Finding(
                    "XGetConsumerLag",
                    "warning",
                    f"{group} is {lag} records behind on {topic} "
                    f"(more than {s.alert_consumer_lag_max})",
                    f"Run `xget lag --group {group}` for its rate and the replicas that would "
                    "drain it; scale the service up to its partitions, or find what slows it "
                    "(its /readyz names a dependency it waits for).",
                    lag,
                    s.alert_consumer_lag_max,
                    {"group": group, "topic": topic},
                )
            )
    if f.dead_letters > 0:
        out.append(
            Finding(
                "XGetDeadLetters",
                "warning",
                f"{f.dead_letters} record(s) went to the dead-letters topic in the last "
                f"{s.alert_dead_letters_window_s:.0f} s",
                "Inspect them (`xget dead-letters list`, `xget dead-letters show ID`), fix the "
                "cause, then `xget dead-letters redrive ID`.",
                f.dead_letters,
                0,
            )
        )
    for task_id, idle in sorted(f.stuck_tasks.items()):
        out.append(
            Finding(
                "XGetTaskStuck",
                "warning",
                f"task {task_id} collected nothing for {idle:.0f} s "
                f"(limit {s.alert_task_stuck_s:.0f} s)",
                f"Look at `GET /api/v1/tasks/{task_id}/status` (waiting_for_accounts?), the "
                "accounts (`xget accounts list`) and `xget lag`; cancel it "
                f"(`POST /api/v1/tasks/{task_id}/cancel`) if it is no longer wanted.",
                idle,
                s.alert_task_stuck_s,
                {"task_id": task_id},
            )
        )
    return out


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


@dataclass
class Alert:
    finding: Finding
    state: str  # pending, firing, resolved
    since: float  # when the condition started to hold
    fired_at: float | None = None
    resolved_at: float | None = None
    sent_state: str | None = None  # the last state queued for delivery

    def view(self) -> dict:
        f = self.finding
        return {
            "fingerprint": f.fingerprint,
            "name": f.name,
            "state": self.state,
            "severity": f.severity,
            "summary": f.summary,
            "action": f.action,
            "value": f.value,
            "threshold": f.threshold,
            "labels": f.labels,
            "since": _iso(self.since),
            "fired_at": _iso(self.fired_at),
            "resolved_at": _iso(self.resolved_at),
        }

    def alertmanager(self) -> dict:
        """One alert of Alertmanager's webhook body."""
        f = self.finding
        return {
            "status": "resolved" if self.state == "resolved" else "firing",
            "labels": {"alertname": f.name, "severity": f.severity, **f.labels},
            "annotations": {"summary": f.summary, "action": f.action},
            "startsAt": _iso(self.fired_at or self.since),
            "endsAt": _iso(self.resolved_at) or "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": f.fingerprint,
        }


def webhook_body(alert: Alert) -> dict:
    """Alertmanager's webhook JSON (version 4) for one alert: what its receivers read."""
    one = alert.alertmanager()
    return {
        "version": "4",
        "groupKey": f"xget:{alert.finding.fingerprint}",
        "truncatedAlerts": 0,
        "status": one["status"],
        "receiver": "xget",
        "groupLabels": {"alertname": alert.finding.name},
        "commonLabels": one["labels"],
        "commonAnnotations": one["annotations"],
        "externalURL": "",
        "alerts": [one],
    }


class AlertBook:
    """The alerts' states; `update` returns the alerts that just fired or resolved."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.active: dict[str, Alert] = {}  # pending or firing, by fingerprint
        self.recent: deque[Alert] = deque(maxlen=settings.alert_recent_kept)

    def update(self, findings: list[Finding], now: float) -> list[Alert]:
        changed: list[Alert] = []
        seen = set()
        for f in findings:
            seen.add(f.fingerprint)
            a = self.active.get(f.fingerprint)
            if a is None:
                a = self.active[f.fingerprint] = Alert(f, "pending", now)
            a.finding = f  # the latest value and summary
            if a.state == "pending" and now - a.since >= self.s.alert_for_s:
                a.state, a.fired_at = "firing", now
                changed.append(a)
        for fp in [fp for fp in self.active if fp not in seen]:
            a = self.active.pop(fp)
            if a.state == "firing":
                a.state, a.resolved_at = "resolved", now
                self.recent.appendleft(a)
                changed.append(a)
        return changed

    def firing(self) -> list[Alert]:
        return [a for a in self.active.values() if a.state == "firing"]

    def pending(self) -> list[Alert]:
        return [a for a in self.active.values() if a.state == "pending"]
