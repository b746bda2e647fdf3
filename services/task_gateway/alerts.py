"""The gateway's alert evaluator: XGet's own alerting, for operators without Prometheus.

Why in the gateway: it already follows the state the conditions need (the account pool, the
tasks and their progress) through its task view, it serves the API where the alerts are
shown (`GET /api/v1/admin/alerts`), and it already has one owner among its replicas for
scheduled work (schedule_owner.py): the replica that owns the key "xget-alerts" delivers, so
several gateways send each alert once. Every replica evaluates and shows the same alerts.

Each XGET_ALERT_EVAL_INTERVAL_S it gathers the facts (libs/alerts.py: Facts) from
- account-state and proxy-state (compacted topics the account-manager writes),
- account-events, read from their end: X request outcomes in the last alert_error_window_s,
- end and committed offsets of every consumer group's inputs (libs/lag.py), which also give
  the dead-letters topic's growth,
- the task view: pending/running tasks whose collected count has not moved,
judges them (libs/alerts.evaluate) and POSTs each alert that fired or resolved to
XGET_ALERT_WEBHOOK_URL as Alertmanager's webhook JSON, signed with XGET_WEBHOOK_SECRET like
the reports (X-XGet-Signature). A delivery that fails is retried at the next evaluation, in
order. Alerts live in memory: after a restart a condition that still holds fires again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from fastapi import APIRouter, Depends

from libs import lag
from libs.alerts import NOT_AN_ERROR, PROXY_FAULTS, AlertBook, Facts, evaluate, webhook_body
from libs.kafka import decode, follow_from_end
from libs.metrics import ALERTS_FIRING, TASKS_WITHOUT_PROGRESS
from libs.records.accounts import AccountEvent, AccountState, ProxyState
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import ACCOUNT_EVENTS, DEAD_LETTERS, PROXY_STATE, topic_name
from libs.webhooks import SIGNATURE_HEADER, sign

from .task_view import TaskView

log = logging.getLogger(__name__)

DELIVERY_KEY = "xget-alerts"  # the schedule owner of this key delivers
MAX_UNDELIVERED = 1000
ACTIVE_STATES = ("pending", "running", "waiting_for_accounts")


class AlertEvaluator:
    def __init__(
        self,
        settings: Settings,
        view: TaskView,
        delivers: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ):
        self.s = settings
        self.view = view
        self.delivers = delivers
        self.clock = clock
        self.proxies = TopicTable(settings, PROXY_STATE)
        self.book = AlertBook(settings)
        self.outcomes: deque[tuple[float, str, str | None]] = deque()  # (at, outcome, proxy)
        self.dead_ends: deque[tuple[float, int]] = deque()  # (at, dead-letters end total)
        self.progress: dict[str, tuple[int, float]] = {}  # task → (collected, since)
        self.undelivered: deque[dict] = deque()
        self.evaluated_at: float | None = None
        self.last_error: str | None = None
        self._names: set[str] = set()  # alert names with a xget_alerts_firing series
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    # --- facts ----------------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        """X request outcomes from now on (the error rates' window); after a broker fault it
        follows again from the end (a gap in the window only lowers the counts)."""
        while not self._stop.is_set():
            try:
                await self._follow_events_once()
            except Exception as e:  # noqa: BLE001 - the follower must outlive the broker
                log.warning("alert evaluator: account-events not followed (%s); again in 5 s", e)
                await asyncio.sleep(5.0)

    async def _follow_events_once(self) -> None:
        consumer, _ = await follow_from_end(self.s, ACCOUNT_EVENTS, "xget-alerts")
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                now = self.clock()
                for msgs in batches.values():
                    for m in msgs:
                        try:
                            e = decode(ACCOUNT_EVENTS, m)
                        except ValueError:
                            continue  # the account-manager dead-letters it; not ours to judge
                        if isinstance(e, AccountEvent):
                            self.outcomes.append((now, e.outcome, e.proxy_id))
        finally:
            await consumer.stop()

    def _error_counts(self, now: float) -> tuple[int, int, int, int]:
        while self.outcomes and self.outcomes[0][0] < now - self.s.alert_error_window_s:
            self.outcomes.popleft()
        x = errs = px = perrs = 0
        for _, outcome, proxy in self.outcomes:
            x += 1
            errs += outcome not in NOT_AN_ERROR
            if proxy:
                px += 1
                perrs += outcome in PROXY_FAULTS
        return x, errs, px, perrs

    async def _offsets(self, now: float) -> tuple[dict[tuple[str, str], int], int]:
        """Lag per (group, topic), and dead letters new within the dead-letter window."""
        from services.declarations import consumer_groups

        prefix = self.s.topic_prefix
        groups = {
            g.group_id(prefix): [prefix + t.name for t in g.inputs]
            for g in consumer_groups().values()
        }
        snap = await lag.snapshot(self.s, groups, with_members=False)
        lags: dict[tuple[str, str], int] = {}
        for group, committed in snap.committed.items():
            for tp, offset in committed.items():
                behind = snap.end[tp] - (offset if offset is not None else snap.start[tp])
                key = (group.removeprefix(prefix), tp.topic.removeprefix(prefix))
                lags[key] = lags.get(key, 0) + max(0, behind)
        dead_topic = topic_name(DEAD_LETTERS, prefix)
        total = sum(end for tp, end in snap.end.items() if tp.topic == dead_topic)
        self.dead_ends.append((now, total))
        while len(self.dead_ends) > 1 and self.dead_ends[1][0] <= (
            now - self.s.alert_dead_letters_window_s
        ):
            self.dead_ends.popleft()
        return lags, max(0, total - self.dead_ends[0][1])

    def _stuck(self, now: float) -> dict[str, float]:
        stuck: dict[str, float] = {}
        seen = set()
        for task_id in self.view.task_ids():
            st = self.view.status(task_id)
            if st is None or st.get("status") not in ACTIVE_STATES:
                continue
            seen.add(task_id)
            collected = st["progress"]["collected"]
            known = self.progress.get(task_id)
            if known is None or known[0] != collected:
                updated = st.get("updated_at")
                since = (
                    updated.timestamp() if known is None and isinstance(updated, datetime) else now
                )
                known = self.progress[task_id] = (collected, since)
            idle = now - known[1]
            if idle >= self.s.alert_task_stuck_s:
                stuck[task_id] = idle
        for gone in set(self.progress) - seen:
            del self.progress[gone]
        TASKS_WITHOUT_PROGRESS.set(len(stuck))
        return stuck

    async def facts(self) -> Facts:
        now = self.clock()
        x, errs, px, perrs = self._error_counts(now)
        lags, dead = await self._offsets(now)
        return Facts(
            now=now,
            accounts=[a for a in self.view.accounts.rows.values() if isinstance(a, AccountState)],
            proxies=[p for p in self.proxies.rows.values() if isinstance(p, ProxyState)],
            x_requests=x,
            x_errors=errs,
            proxy_requests=px,
            proxy_errors=perrs,
            lags=lags,
            dead_letters=dead,
            stuck_tasks=self._stuck(now),
        )

    # --- judging and delivering -------------------------------------------------------------------

    async def evaluate_once(self) -> None:
        facts = await self.facts()
        changed = self.book.update(evaluate(self.s, facts), facts.now)
        self.evaluated_at = facts.now
        firing = [a.finding.name for a in self.book.firing()]
        self._names.update(firing)
        for name in self._names:
            ALERTS_FIRING.labels(name).set(firing.count(name))
        for a in changed:
            level = logging.WARNING if a.state == "firing" else logging.INFO
            log.log(level, "alert %s %s: %s", a.finding.name, a.state, a.finding.summary)
        if self.s.alert_webhook_url and self.delivers():
            # Every state not sent yet, oldest first: also what changed while another replica
            # was the one delivering (this one took over since).
            for a in [*reversed(self.book.recent), *self.book.firing()]:
                if a.sent_state != a.state:
                    a.sent_state = a.state
                    if len(self.undelivered) >= MAX_UNDELIVERED:
                        dropped = self.undelivered.popleft()
                        log.error("alert delivery backlog full: dropped %s", dropped["groupKey"])
                    self.undelivered.append(webhook_body(a))
        await self.deliver()

    async def deliver(self) -> None:
        if not self.undelivered:
            return
        secret = self.s.webhook_secret.get_secret_value()
        async with httpx.AsyncClient(timeout=10.0) as client:
            while self.undelivered:
                body = self.undelivered[0]
                raw = json.dumps(body, separators=(",", ":")).encode()
                headers = {"Content-Type": "application/json"}
                if secret:
                    headers[SIGNATURE_HEADER] = sign(secret, raw)
                try:
                    r = await client.post(self.s.alert_webhook_url, content=raw, headers=headers)
                except httpx.HTTPError as e:
                    self.last_error = f"{type(e).__name__}: {e}"[:300]
                    log.warning("alert webhook unreachable (%s): retried later", self.last_error)
                    return
                if r.status_code >= 500 or r.status_code in (408, 429):
                    self.last_error = f"HTTP {r.status_code}"
                    log.warning("alert webhook answered %d: retried later", r.status_code)
                    return
                if r.status_code >= 400:
                    self.last_error = f"HTTP {r.status_code} (dropped: the receiver refused it)"
                    log.error("alert webhook refused %s: %d", body["groupKey"], r.status_code)
                self.undelivered.popleft()
        self.last_error = None

    async def run(self) -> None:
        await self.proxies.start()
        follower = asyncio.create_task(self._follow_events(), name="alert-events")
        try:
            while not self._stop.is_set():
                try:
                    await self.evaluate_once()
                except Exception as e:  # noqa: BLE001 - the loop must outlive any one failure
                    self.last_error = f"{type(e).__name__}: {e}"[:300]
                    log.warning("alert evaluation failed: %s", self.last_error)
                try:
                    await asyncio.wait_for(self._stop.wait(), self.s.alert_eval_interval_s)
                except TimeoutError:
                    pass
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await self.proxies.stop()

    # --- the API's view ---------------------------------------------------------------------------

    def view_all(self) -> dict:
        return {
            "firing": [a.view() for a in self.book.firing()],
            "pending": [a.view() for a in self.book.pending()],
            "recent": [a.view() for a in self.book.recent],
            "evaluated_at": (
                datetime.fromtimestamp(self.evaluated_at, UTC).isoformat()
                if self.evaluated_at
                else None
            ),
            "delivery": {
                "webhook": bool(self.s.alert_webhook_url),
                "this_replica_delivers": self.delivers(),
                "undelivered": len(self.undelivered),
                "last_error": self.last_error,
            },
        }


def router(evaluator: AlertEvaluator, auth) -> APIRouter:
    r = APIRouter(dependencies=[Depends(auth)], tags=["admin"])

    @r.get("/api/v1/admin/alerts")
    async def alerts() -> dict:
        """Alerts firing now (each with what to do), conditions pending their XGET_ALERT_FOR_S,
        and recently resolved ones: the same conditions as the Prometheus rules."""
        return evaluator.view_all()

    return r
