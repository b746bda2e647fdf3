"""The client's contract (seeds/xget-design.md) against the gateway on the real broker, chdb
and moto S3: every request example of the design for tasks, statistics and admin, each answer
checked against the design's response fields and types; and nothing silently ignored: every
route of the OpenAPI document answers an unknown query parameter and an unknown body field
with a 422 naming it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from infra import local
from libs.kafka import Producer
from services.runtime import clickhouse_for, close_stores
from services.task_gateway.api import create_app
from services.task_gateway.kol_tasks import KolTaskView
from services.task_gateway.task_view import TaskView
from tests.e2e.harness import fresh_prefix

from .test_gateway_limits import BODIES, PATH_VALUES, QUERY_VALUES

TOKEN = "contract-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNKNOWN = "xget_unknown_name"

# The design's fields and types per answer (seeds/xget-design.md); extra fields are fine.
STR, INT, FLOAT, BOOL, DICT, LIST = str, int, (int, float), bool, dict, list
TIME = "datetime"
OPT = "optional"  # the design's Optional[...]: null, or the type
TASK_CREATED = {"status": STR, "task_id": STR, "message": STR, "estimated_completion": TIME}
SCHEDULED_CREATED = {"status": STR, "task_id": STR, "message": STR, "next_execution": TIME}
TASK_STATUS = {
    "task_id": STR,
    "status": STR,
    "progress": {"collected": INT, "target": INT, "percentage": FLOAT},
    "created_at": TIME,
    "updated_at": TIME,
}
TASK_RESPONSE = {  # TaskResponse
    "task_id": STR,
    "type": STR,
    "status": STR,
    "parameters": DICT,
    "progress": {"total": INT, "collected": INT, "failed": INT, "percentage": FLOAT},
    "created_at": TIME,
    "started_at": (OPT, TIME),
    "completed_at": (OPT, TIME),
    "error_message": (OPT, STR),
}
TASK_PROGRESS = {"total": INT, "collected": INT, "failed": INT, "percentage": FLOAT}
CANCELLED = {"message": STR, "task_id": STR}
KEYWORD_MONTH = {
    "keyword": STR,
    "year": INT,
    "month": INT,
    "unique_posts_count": INT,
    "period": STR,
    "calculated_at": TIME,
}
MONTHLY_ALL = {"period": STR, "total_keywords": INT, "statistics": [KEYWORD_MONTH]}
TASK_STATS = {
    "task_id": STR,
    "total_collected": INT,
    "unique_posts": INT,
    "duplicate_rate": FLOAT,
    "task_status": STR,
    "keyword": (OPT, STR),
    "created_at": (OPT, TIME),
    "completed_at": (OPT, TIME),
}
SYSTEM_STATS = {
    "total_tweets": INT,
    "total_users": INT,
    "active_tasks": INT,
    "healthy_accounts": INT,
    "available_proxies": INT,
    "today_collected": INT,
    "system_uptime": STR,
    "last_updated": TIME,
}
TASK_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
TASK_TYPES = ("keyword_search", "user_timeline", "user_profile")


def mismatches(value, shape, where: str = "") -> list[str]:
    """Where `value` lacks a field of `shape` or has another type."""
    if isinstance(shape, tuple) and shape and shape[0] == OPT:
        return [] if value is None else mismatches(value, shape[1], where)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where or '.'}: {type(value).__name__}, not an object"]
        out = []
        for name, inner in shape.items():
            if name not in value:
                out.append(f"{where}{name}: missing")
            else:
                out += mismatches(value[name], inner, f"{where}{name}.")
        return out
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list"]
        return [
            m for i, item in enumerate(value) for m in mismatches(item, shape[0], f"{where}{i}.")
        ]
    if shape == TIME:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except (AttributeError, ValueError):
            return [f"{where}: {value!r} is not a date-time"]
        return []
    ok = isinstance(value, shape) and not (isinstance(value, bool) and shape is not BOOL)
    return [] if ok else [f"{where}: {value!r} is not {shape}"]


@pytest.fixture
async def gateway(noida, s3, chdb_path):
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        api_token=TOKEN,
        clickhouse_dsn=f"chdb://{chdb_path}",
        object_store_url=f"s3://xget-contract-{uuid.uuid4().hex[:8]}",
        s3_endpoint=str(s3),
        s3_access_key="testing",
        s3_secret_key="testing",
        s3_secure=False,
        # no account-manager runs here: stats and health must say so, not fail
        account_admin_url="http://127.0.0.1:9",
    )
    producer = await Producer(settings).start()
    view, kol_view = TaskView(settings), KolTaskView(settings)
    await view.start()
    await kol_view.start()
    app = create_app(
        settings, producer, view, lambda: clickhouse_for(settings, wait=False), kol_view
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=AUTH, timeout=60
        ) as client:
            yield settings, app, client
    finally:
        await close_stores()
        await asyncio.wait_for(kol_view.stop(), 60)
        await asyncio.wait_for(view.stop(), 60)
        await asyncio.wait_for(producer.stop(), 60)


def _names(r: httpx.Response, field: str) -> bool:
    try:
        detail = r.json().get("detail", [])
    except ValueError:
        return False
    return any(isinstance(d, dict) and d.get("field") == field for d in detail)


async def test_unknown_query_parameters_and_body_fields_are_422_on_every_route(gateway):
    _, app, client = gateway
    doc = app.openapi()
    checked, failures = 0, []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if op.get("x-xget-forwarded"):
                continue  # handed to the account-manager, which applies the rule itself (below)
            params = op.get("parameters", [])
            path_values = {
                p["name"]: PATH_VALUES.get(p["name"], "walk") for p in params if p["in"] == "path"
            }
            query = {
                p["name"]: QUERY_VALUES[p["name"]]
                for p in params
                if p["in"] == "query" and p.get("required")
            }
            url = path.format(**path_values)
            body = BODIES.get(path) if "requestBody" in op else None
            r = await client.request(method, url, params={**query, UNKNOWN: "1"}, json=body)
            checked += 1
            if r.status_code != 422 or not _names(r, UNKNOWN):
                failures.append(
                    f"{method.upper()} {path} ?{UNKNOWN}: {r.status_code} {r.text[:200]}"
                )
            # a body field: in the route's body, or in a body the route does not take
            r = await client.request(method, url, params=query, json={**(body or {}), UNKNOWN: 1})
            checked += 1
            if r.status_code != 422 or not _names(r, UNKNOWN):
                failures.append(
                    f"{method.upper()} {path} body.{UNKNOWN}: {r.status_code} {r.text[:200]}"
                )
    assert not failures, "\n".join(failures)
    assert checked >= 2 * 23, checked  # the walk found the routes (23 today)


async def test_nested_unknown_fields_and_design_names(gateway):
    _, _, client = gateway
    r = await client.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": "x",
            "start_time": "2026-10-01T00:00:00Z",
            "end_time": "2026-10-02T00:00:00Z",
            "filters": {"lang": "en", "colour": "red"},
        },
    )
    assert r.status_code == 422 and _names(r, "filters.colour"), r.text
    # the design's names of the same things are not unknown: they work
    r = await client.get("/api/v1/tasks", params={"status": "pending", "limit": 5, "offset": 0})
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/tasks/search",
        json={
            "type": "keyword_search",
            "keyword": "x",
            "count": 10,
            "required_count": 20,
        },
    )
    assert r.status_code == 422 and _names(r, "count"), r.text


async def test_design_examples_answer_the_design_fields(gateway):
    _, _, client = gateway
    # 业务API接口设计 1: 定时搜索任务下发接口
    r = await client.post(
        "/api/v1/tasks/scheduled",
        json={
            "keyword": "人工智能",
            "priority": 1,
            "frequency": "daily",
            "frequency_count": 3,
            "task_id": "task_20240101_001",
        },
    )
    assert r.status_code == 200, r.text
    assert not mismatches(r.json(), SCHEDULED_CREATED), r.json()
    assert r.json()["status"] == "success" and r.json()["task_id"] == "task_20240101_001"
    assert r.json()["estimated_completion"]  # every create answers an estimate
    # 2: 按需搜索任务下发接口
    r = await client.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": "ChatGPT",
            "priority": 2,
            "required_count": 1000,
            "start_time": "2024-01-01T00:00:00Z",
            "end_time": "2024-01-01T23:59:59Z",
            "task_id": "task_20240101_002",
        },
    )
    assert r.status_code == 200, r.text
    assert not mismatches(r.json(), TASK_CREATED), r.json()
    assert r.json()["status"] == "success"
    # 3: 任务状态查询接口
    for task_id in ("task_20240101_001", "task_20240101_002"):
        r = await client.get(f"/api/v1/tasks/{task_id}/status")
        assert r.status_code == 200, r.text
        assert not mismatches(r.json(), TASK_STATUS), r.json()
    # API使用示例 3: 创建搜索任务 (the design's TaskRequest; answers its TaskResponse)
    r = await client.post(
        "/api/v1/tasks/search",
        json={
            "type": "keyword_search",
            "keyword": "artificial intelligence",
            "count": 1000,
            "priority": "high",
        },
    )
    assert r.status_code == 200, r.text
    created = r.json()
    assert not mismatches(created, TASK_RESPONSE), created
    assert created["status"] in TASK_STATUSES and created["type"] in TASK_TYPES
    assert created["parameters"]["required_count"] == 1000
    assert created["parameters"]["priority"] == 2  # "high"
    assert created["estimated_completion"] and created["estimate"]["posts"] == 1000
    # the other TaskRequest fields: username and the date fields
    r = await client.post(
        "/api/v1/tasks/search",
        json={
            "type": "user_timeline",
            "username": "elonmusk",
            "count": 50,
            "priority": "normal",
            "start_date": "2026-10-01T00:00:00Z",
            "end_date": "2026-10-03T00:00:00Z",
        },
    )
    assert r.status_code == 200, r.text
    params = r.json()["parameters"]
    assert params["start_time"].startswith("2026-10-01") and params["end_time"].startswith(
        "2026-10-03"
    )
    r = await client.post(
        "/api/v1/tasks/search", json={"type": "user_profile", "username": "elonmusk"}
    )
    assert r.status_code == 200 and not mismatches(r.json(), TASK_RESPONSE), r.text
    # KOL tasks answer an estimate and are listed like any task
    r = await client.post("/api/v1/tasks/kol-followings", json={"handles": ["jack"]})
    assert r.status_code == 200, r.text
    kol = r.json()
    assert kol["status"] == "success" and kol["estimated_completion"] and kol["estimate"]
    # 任务管理API: list (status filter, limit, offset) and read
    r = await client.get("/api/v1/tasks", params={"limit": 50, "offset": 0})
    assert r.status_code == 200, r.text
    items = r.json()  # the design's List[TaskResponse]: the bare list
    assert isinstance(items, list) and int(r.headers["X-Total-Count"]) == len(items)
    for item in items:
        assert not mismatches(item, TASK_RESPONSE), item
    listed = {i["task_id"] for i in items}
    assert {"task_20240101_002", created["task_id"], kol["task_id"]} <= listed
    r = await client.get("/api/v1/tasks", params={"type": "kol_followings"})
    assert [i["task_id"] for i in r.json()] == [kol["task_id"]]
    r = await client.get("/api/v1/tasks", params={"status": "pending"})
    assert r.status_code == 200 and all(i["status"] == "pending" for i in r.json())
    for task_id in ("task_20240101_002", kol["task_id"], "task_20240101_001"):
        r = await client.get(f"/api/v1/tasks/{task_id}")
        assert r.status_code == 200 and not mismatches(r.json(), TASK_RESPONSE), r.text
    r = await client.get(f"/api/v1/tasks/{created['task_id']}/progress")
    assert r.status_code == 200 and not mismatches(r.json(), TASK_PROGRESS), r.text
    r = await client.post(f"/api/v1/tasks/{created['task_id']}/cancel")
    assert r.status_code == 200 and not mismatches(r.json(), CANCELLED), r.text
    assert r.json()["status"] == "cancelled"
    r = await client.get(f"/api/v1/tasks/{created['task_id']}")
    assert r.json()["completed_at"] is not None
    # 统计API接口
    year, month = datetime.now(UTC).year, datetime.now(UTC).month
    r = await client.get(
        "/api/v1/statistics/monthly/人工智能", params={"year": year, "month": month}
    )
    assert r.status_code == 200 and not mismatches(r.json(), KEYWORD_MONTH), r.text
    assert r.json()["keyword"] == "人工智能" and r.json()["unique_posts_count"] == 0
    r = await client.get("/api/v1/statistics/monthly/all", params={"year": year, "month": month})
    assert r.status_code == 200 and not mismatches(r.json(), MONTHLY_ALL), r.text
    r = await client.get("/api/v1/statistics/monthly", params={"year": year, "month": month})
    assert r.status_code == 200 and not mismatches(r.json(), MONTHLY_ALL), r.text
    r = await client.get("/api/v1/statistics/tasks/task_20240101_002")
    assert r.status_code == 200 and not mismatches(r.json(), TASK_STATS), r.text
    # 系统管理API (API使用示例 4, 5)
    r = await client.get("/api/v1/admin/stats")
    assert r.status_code == 200 and not mismatches(r.json(), SYSTEM_STATS), r.text
    stats = r.json()
    assert stats["active_tasks"] >= 3 and stats["tasks"]["total"] >= 5
    assert stats["accounts"]["error"]  # no account-manager here: said, not hidden
    r = await client.get("/api/v1/admin/health", headers={"Authorization": ""})
    health = r.json()
    assert health["dependencies"]["broker"]["status"] == "ok", health
    assert health["dependencies"]["clickhouse"]["status"] == "ok", health
    assert health["dependencies"]["object_store"]["status"] == "ok", health
    # the account-manager is not running: unhealthy, 503, and it says which
    assert r.status_code == 503 and health["status"] == "unhealthy"
    assert health["services"]["account-manager"]["status"] == "down"


async def test_task_list_pages_are_the_designs_bare_list(gateway):
    """GET /api/v1/tasks at a middle offset: a JSON list of TaskResponses (the right ones,
    newest first), X-Total-Count the exact number of tasks of the filter, Link the next and
    previous pages with the filter kept."""
    _, _, client = gateway
    keyword = f"pages-{uuid.uuid4().hex[:6]}"
    made = []
    for i in range(7):
        r = await client.post(
            "/api/v1/tasks/search",
            json={"type": "keyword_search", "keyword": keyword, "count": 10 + i},
        )
        assert r.status_code == 200, r.text
        made.append(r.json()["task_id"])
    # (a created task is listed at once: the gateway's view reads its own writes)
    r = await client.get("/api/v1/tasks", params={"keyword": keyword, "limit": 100})
    newest_first = [t["task_id"] for t in r.json()]
    assert sorted(newest_first) == sorted(made) and "Link" not in r.headers
    r = await client.get("/api/v1/tasks", params={"keyword": keyword, "limit": 2, "offset": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert isinstance(page, list) and [t["task_id"] for t in page] == newest_first[2:4]
    for t in page:
        assert not mismatches(t, TASK_RESPONSE), t
    assert r.headers["X-Total-Count"] == "7"
    nxt, prev = (parse_qs(urlsplit(r.links[rel]["url"]).query) for rel in ("next", "prev"))
    assert nxt == {"keyword": [keyword], "limit": ["2"], "offset": ["4"]}
    assert prev == {"keyword": [keyword], "limit": ["2"], "offset": ["0"]}
    # following next to the end reads every task once; the last page links no further
    seen, url, pages = [], r.links["prev"]["url"], 0
    while url:
        r = await client.get(url)
        seen += [t["task_id"] for t in r.json()]
        url, pages = r.links.get("next", {}).get("url"), pages + 1
    assert seen == newest_first and pages == 4


# The endpoints this contract covers: each documents its answer with a model and an example.
OWN = ("/api/v1/tasks", "/api/v1/statistics", "/api/v1/admin/stats", "/api/v1/admin/health")
# The design's list endpoints (List[TaskResponse], List[TweetResponse]).
LISTS = ("/api/v1/tasks", "/api/v1/data/tweets/search", "/api/v1/data/users/{username}/tweets")


async def test_openapi_has_tags_models_examples_and_the_real_422(gateway):
    _, _, client = gateway
    doc = (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    own = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("tags"), f"{where}: no tag"
            ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Rejection", where
            if path.startswith(OWN) or path in LISTS:
                own += 1
                answer = op["responses"]["200"]
                ok = answer["content"]["application/json"]["schema"]
                if path in LISTS:  # the design's List[...]: an array of the model, and headers
                    assert ok["type"] == "array", f"{where}: {ok}"
                    assert isinstance(answer["content"]["application/json"]["example"], list)
                    paging = {"X-Total-Count", "Link"}
                    if "/data/" in path:  # a post search's count may be a lower bound
                        paging.add("X-Total-Count-Exact")
                    assert set(answer["headers"]) == paging, where
                    ok = ok["items"]
                model = schemas[ok["$ref"].rsplit("/", 1)[1]]
                assert model.get("examples"), f"{where}: no example"
                assert model.get("properties"), where
    assert own >= 16, own
    assert {n: schemas[n]["required"][:3] for n in ("TaskOut", "TweetOut")} == {
        "TaskOut": ["task_id", "type", "status"],
        "TweetOut": ["tweet_id", "text", "user"],
    }
    # The account-manager's lists, forwarded: documented as the design's List[AccountResponse]
    # and List[ProxyResponse] with every field of the design's models.
    design = {
        "/api/v1/admin/accounts": {
            "account_id", "username", "status", "health_score", "success_rate",
            "daily_used", "daily_limit", "last_used",
        },
        "/api/v1/admin/proxies": {
            "proxy_id", "host", "port", "type", "location", "status", "latency_ms",
            "success_rate",
        },
    }  # fmt: skip
    for path, fields in design.items():
        answer = doc["paths"][path]["get"]["responses"]["200"]
        ok = answer["content"]["application/json"]["schema"]
        assert ok["type"] == "array" and "X-Total-Count" in answer["headers"], path
        model = schemas[ok["items"]["$ref"].rsplit("/", 1)[1]]
        assert set(model["required"]) == fields and model.get("examples"), path
    assert "HTTPValidationError" not in schemas  # never sent, so not documented
    # and a 422 is what the document says
    rejection = schemas["Rejection"]
    r = await client.get("/api/v1/tasks", params={"colour": "red"})
    body = r.json()
    assert r.status_code == 422 and set(rejection["required"]) <= set(body)
    assert body["status"] == "rejected"
    assert all(set(d) == {"field", "message"} for d in body["detail"]), body


async def test_health_names_what_is_down(noida):
    """ClickHouse and the object store unreachable: 503 within the checks' timeouts, each
    named with its cause, the broker still ok."""
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        api_token=TOKEN,
        clickhouse_dsn=f"http://127.0.0.1:{local.free_port()}",
        object_store_url="s3://xget-nowhere",
        s3_endpoint=f"127.0.0.1:{local.free_port()}",
        account_admin_url=f"http://127.0.0.1:{local.free_port()}",
    )
    producer = await Producer(settings).start()
    view = TaskView(settings)
    await view.start()
    app = create_app(settings, producer, view, lambda: clickhouse_for(settings, wait=False))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=60
        ) as client:
            t0 = time.monotonic()
            r = await client.get("/api/v1/admin/health")
            took = time.monotonic() - t0
    finally:
        await close_stores()
        await asyncio.wait_for(view.stop(), 60)
        await asyncio.wait_for(producer.stop(), 60)
    health = r.json()
    assert r.status_code == 503 and health["status"] == "unhealthy", health
    deps = health["dependencies"]
    assert deps["broker"]["status"] == "ok", deps
    for name in ("clickhouse", "object_store"):
        assert deps[name]["status"] == "down" and deps[name]["detail"], deps
    assert health["services"]["account-manager"]["status"] == "down"
    assert took < 15, took  # checks run side by side, each bounded
