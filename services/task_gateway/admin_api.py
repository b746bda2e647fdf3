"""System management: `GET /api/v1/admin/stats` (the design's SystemStats) and
`GET /api/v1/admin/health` (no token; every dependency's status).

Stats sum the gateway's task view, ClickHouse (posts, users, today's and the last hour's
collection) and the account-manager's admin API (XGET_ACCOUNT_ADMIN_URL) for accounts and
proxies. Health checks the broker (a metadata request), ClickHouse (SELECT 1), the object
store (a stat), this process's components (each consumer group and the API) and every
readiness URL of XGET_HEALTH_READY_URLS (the other services' /readyz), each within
HEALTH_TIMEOUT_S; 200 when all are ok, else 503 with the same body.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from libs.ops_server import HEALTH
from libs.settings import Settings
from libs.storage.objects import open_object_store

from .api_models import ERRORS, TAG_ADMIN, Health, SystemStats
from .kol_tasks import KolTaskView
from .pool_forward import admin_base_url
from .task_view import TaskView
from .unavailable import opened_store, root_cause

HEALTH_TIMEOUT_S = 3.0
# Task statuses that count as active (the design's 活跃任务数).
ACTIVE = ("pending", "running", "waiting_for_accounts")


def ready_urls(settings: Settings) -> dict[str, str]:
    """XGET_HEALTH_READY_URLS: name=url,… (a bad entry is named in the health answer)."""
    out = {}
    for part in filter(None, (p.strip() for p in settings.health_ready_urls.split(","))):
        name, _, url = part.partition("=")
        out[name.strip()] = url.strip()
    return out


def create_router(
    settings: Settings,
    view: TaskView,
    kol_view: KolTaskView | None,
    get_store: Callable[[], Awaitable[Any]] | None,
    auth,
) -> APIRouter:
    r = APIRouter(tags=[TAG_ADMIN])
    started = time.monotonic()
    token = settings.api_token.get_secret_value()
    objects: list[Any] = []  # the object store, opened on the first health check

    async def store():
        return await opened_store(get_store)

    async def pool(path: str) -> tuple[list[dict], str | None]:
        """The account-manager's list at `path`, or the reason it could not be read."""
        try:
            async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as c:
                resp = await c.get(
                    admin_base_url(settings) + path, headers={"Authorization": f"Bearer {token}"}
                )
            resp.raise_for_status()
            rows = resp.json()  # the design's List[AccountResponse] / List[ProxyResponse]
            if not isinstance(rows, list):
                raise ValueError(f"not a list: {type(rows).__name__}")
            return rows, None
        except (httpx.HTTPError, ValueError) as e:
            return [], f"account-manager admin API: {type(e).__name__}"

    @r.get(
        "/api/v1/admin/stats",
        dependencies=[Depends(auth)],
        response_model=SystemStats,
        responses=ERRORS,
        summary="获取系统统计信息 (system statistics)",
    )
    async def stats():
        statuses: Counter[str] = Counter()
        for task_id in view.task_ids():
            st = view.status(task_id)
            if st is not None:
                statuses[st["status"]] += 1
        if kol_view is not None:
            for task_id in kol_view.task_ids():
                st = kol_view.status(task_id)
                if st is not None:
                    statuses[st["status"]] += 1
        ch = await store()
        now = datetime.now(UTC)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        (posts,) = (await ch.query_rows("SELECT count() FROM posts FINAL"))[0]
        (users,) = (await ch.query_rows("SELECT uniqExact(user_id) FROM users"))[0]
        today_n, hour_n = (
            await ch.query_rows(
                "SELECT uniqExactIf(post_id, collected_at >= {d:DateTime64(3, 'UTC')}), "
                "uniqExactIf(post_id, collected_at >= {h:DateTime64(3, 'UTC')}) FROM task_posts "
                "WHERE collected_at >= least({d:DateTime64(3, 'UTC')}, {h:DateTime64(3, 'UTC')})",
                {"d": today, "h": now - timedelta(hours=1)},
            )
        )[0]
        (accounts, acc_err), (proxies, px_err) = await asyncio.gather(
            pool("/api/v1/admin/accounts"), pool("/api/v1/admin/proxies")
        )
        acc = Counter(a.get("status") for a in accounts)
        px = Counter(p.get("status") for p in proxies)
        return {
            "total_tweets": posts,
            "total_users": users,
            "active_tasks": sum(statuses[s] for s in ACTIVE),
            "healthy_accounts": acc["active"],
            "available_proxies": px["healthy"],
            "today_collected": today_n,
            "system_uptime": str(timedelta(seconds=int(time.monotonic() - started))),
            "last_updated": now,
            "tasks": {"total": sum(statuses.values()), "by_status": dict(statuses)},
            "posts": {"total": posts, "today": today_n, "last_hour": hour_n},
            "accounts": {"total": len(accounts), "by_status": dict(acc), "error": acc_err},
            "proxies": {"total": len(proxies), "by_status": dict(px), "error": px_err},
            "throughput": {
                "posts_last_hour": hour_n,
                "posts_per_minute": round(hour_n / 60, 2),
                "posts_today": today_n,
            },
        }

    async def timed(check: Callable[[], Awaitable[None]]) -> dict:
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(check(), HEALTH_TIMEOUT_S)
        except TimeoutError:
            return {"status": "down", "detail": f"no answer within {HEALTH_TIMEOUT_S} s"}
        except Exception as e:  # noqa: BLE001 - any failure is the dependency's status
            cause = root_cause(e)
            return {"status": "down", "detail": f"{type(cause).__name__}: {cause}"[:300]}
        return {"status": "ok", "latency_ms": round(1000 * (time.monotonic() - t0), 1)}

    async def broker() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            request_timeout_ms=int(HEALTH_TIMEOUT_S * 1000),
        )
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    async def clickhouse() -> None:
        ch = await store()
        await ch.query_rows("SELECT 1")

    async def object_store() -> None:
        if not objects:
            objects.append(await asyncio.to_thread(open_object_store, settings, pool_size=1))
        await objects[0].stat("xget-health-check")

    async def ready(url: str) -> dict:
        try:
            async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as c:
                resp = await c.get(url)
        except httpx.HTTPError as e:
            return {"status": "down", "detail": f"{type(e).__name__}: {e}"[:300]}
        if resp.status_code == 200:
            return {"status": "ok"}
        return {"status": "not_ready", "detail": resp.text.strip()[:300]}

    @r.get(
        "/api/v1/admin/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "Something is down or not ready"}},
        summary="系统健康检查 (no token)",
    )
    async def health():
        deps = dict(
            zip(
                ("broker", "clickhouse", "object_store"),
                await asyncio.gather(timed(broker), timed(clickhouse), timed(object_store)),
                strict=True,
            )
        )
        services: dict[str, dict] = {
            c: {"status": "ok"} if why is None else {"status": "not_ready", "detail": why}
            for c, why in HEALTH.components().items()
        }
        urls = {"account-manager": admin_base_url(settings) + "/health", **ready_urls(settings)}
        answers = await asyncio.gather(*(ready(u) for u in urls.values()))
        services.update(zip(urls, answers, strict=True))
        ok = all(d["status"] == "ok" for d in (*deps.values(), *services.values()))
        body = Health(
            status="healthy" if ok else "unhealthy",
            checked_at=datetime.now(UTC),
            dependencies=deps,
            services=services,
        ).model_dump(mode="json")
        return JSONResponse(body, status_code=200 if ok else 503)

    return r
