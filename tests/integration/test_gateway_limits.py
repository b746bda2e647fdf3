"""Bounded input: every parameter of every gateway route has a limit, and a value beyond it
is a 422 naming the parameter, never a 500 (nor a silent no-op, nor millions of jobs).

The walk reads the app's own OpenAPI document, so a route or field added later is covered.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import ConsumerRecord

from libs.kafka import Incoming, Producer
from libs.records.base import SCHEMA_HEADER
from libs.records.tasks import OnDemandTask
from services.task_gateway import scheduler
from services.task_gateway.api import create_app
from services.task_gateway.console_users import ConsoleUsers
from services.task_gateway.kol_tasks import KolTaskView
from services.task_gateway.task_view import TaskView
from tests.e2e.harness import fresh_prefix

TOKEN = "limits-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = {"start_time": "2026-10-01T00:00:00Z", "end_time": "2026-10-02T00:00:00Z"}
HUGE = 18446744073709551616  # 2**64: one past ClickHouse's UInt64
LONG = "a" * 20_000
BAD_TIMES = ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z")

# A valid request of each route: the walk changes one value at a time.
PATH_VALUES = {
    "task_id": "walk-1",
    "post_id": "1234567890",
    "username": "someone",
    "key": "media/ab/walk.jpg",
    "rest": "acc1/test",  # accounts/proxies forwarded by path (pool_forward.py)
    "keyword": "someword",
}
QUERY_VALUES = {"year": 2026, "month": 11}
BODIES = {
    "/api/v1/tasks/ondemand": {"keyword": "x", **WINDOW},
    "/api/v1/tasks/search": {"type": "keyword_search", "keyword": "x", **WINDOW},
    "/api/v1/tasks/scheduled": {"keyword": "x", "frequency": "daily"},
    "/api/v1/tasks/kol-followings": {"handles": ["someone"]},
    "/api/v1/tasks/{task_id}": {"priority": 3},
    "/api/v1/tasks/{task_id}/cancel": {"reason": "walk"},
    "/api/v1/tasks/{task_id}/batches/replay": {"batch_no": 1},  # task_detail_api.py
    "/api/v1/auth/login": {"username": "walker", "password": "walker-password"},
    "/api/v1/admin/users": {"username": "walker", "role": "viewer", "password": "walker-pw-1"},
    "/api/v1/admin/users/{username}": {"role": "viewer"},
    "/api/v1/pricing/quote": {"type": "keyword_search", "keyword": "x"},
}


def _no_clickhouse():
    raise AssertionError("a request with an out-of-range value reached ClickHouse")


@pytest.fixture
async def gateway(noida):
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap), api_token=TOKEN, api_max_list_items=50
    )
    producer = await Producer(settings).start()
    view, kol_view = TaskView(settings), KolTaskView(settings)
    await view.start()
    await kol_view.start()

    async def no_store():
        _no_clickhouse()

    users = await ConsoleUsers(settings, producer).start()
    app = create_app(settings, producer, view, no_store, kol_view, users=users)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=AUTH
        ) as client:
            yield settings, app, client
    finally:
        await users.stop()
        await kol_view.stop()
        await view.stop()
        await producer.stop()


def _resolve(schema: dict, doc: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _variants(schema: dict, doc: dict) -> list[dict]:
    schema = _resolve(schema, doc)
    out = []
    for alt in schema.get("anyOf") or schema.get("oneOf") or [schema]:
        alt = _resolve(alt, doc)
        if alt.get("type") != "null":
            out.append(alt)
    return out


def bad_values(schema: dict, doc: dict, max_items: int) -> list:
    """Out-of-range values for a parameter of this schema (nested objects: see body_cases)."""
    values: list = []
    for alt in _variants(schema, doc):
        kind, fmt = alt.get("type"), alt.get("format")
        if kind in ("integer", "number"):
            values += [HUGE, -HUGE]
        elif kind == "string" and fmt == "date-time":
            values += list(BAD_TIMES)
        elif kind == "string" or "const" in alt or "enum" in alt:
            values.append(LONG)
        elif kind == "array":
            item = _variants(alt.get("items", {}), doc)[0]
            values.append([LONG] if item.get("type") == "string" and "enum" not in item else [HUGE])
            example = item.get("enum", ["a"])[0] if item.get("type") == "string" else 1
            values.append([example] * (max_items + 1))
    return values


def body_cases(schema: dict, doc: dict, max_items: int, prefix: str = ""):
    """(field path, value) for every bounded field of a body, nested objects included."""
    for name, prop in _resolve(schema, doc).get("properties", {}).items():
        field = f"{prefix}{name}"
        for alt in _variants(prop, doc):
            if alt.get("type") == "object" and "properties" in alt:
                yield from ((f, {name: v}) for f, v in body_cases(alt, doc, max_items, f"{field}."))
        yield from ((field, {name: v}) for v in bad_values(prop, doc, max_items))


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for k, v in change.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def _names_field(response: httpx.Response, field: str) -> bool:
    fields = [
        d.get("field") or "" for d in response.json().get("detail", []) if isinstance(d, dict)
    ]
    return any(f == field or f.startswith(field + ".") for f in fields)


async def test_every_route_bounds_every_parameter(gateway):
    settings, app, client = gateway
    doc = app.openapi()
    checked, failures = 0, []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            params = op.get("parameters", [])
            path_values = {p["name"]: PATH_VALUES[p["name"]] for p in params if p["in"] == "path"}
            query = {
                p["name"]: QUERY_VALUES[p["name"]]
                for p in params
                if p["in"] == "query" and p.get("required")
            }
            body = None
            if "requestBody" in op:
                assert path in BODIES, f"add a valid body of {method.upper()} {path} to BODIES"
                body = BODIES[path]

            async def send(path_values=path_values, query=query, body=body):
                return await client.request(
                    method, path.format(**path_values), params=query, json=body
                )

            cases = []
            for p in params:
                for v in bad_values(p["schema"], doc, settings.api_max_list_items):
                    if p["in"] == "path":
                        cases.append((p["name"], v, send({**path_values, p["name"]: v}, query)))
                    else:
                        cases.append((p["name"], v, send(path_values, {**query, p["name"]: v})))
            if body is not None:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                for field, change in body_cases(schema, doc, settings.api_max_list_items):
                    cases.append((field, change, send(body=_merge(body, change))))
            for field, value, pending in cases:
                r = await pending
                checked += 1
                if r.status_code != 422 or not _names_field(r, field):
                    failures.append(
                        f"{method.upper()} {path} {field}={str(value)[:40]}: "
                        f"{r.status_code} {r.text[:200]}"
                    )
    assert not failures, "\n".join(failures)
    assert checked > 100  # the walk found the routes (18 of them) and their parameters


async def test_what_the_operator_found_is_a_422(gateway):
    settings, _, client = gateway
    r = await client.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": "x",
            "start_time": "0001-01-01T00:00:00Z",
            "end_time": "9999-12-31T00:00:00Z",
        },
    )
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "start_time", r.text
    # within the allowed times, but longer than XGET_API_MAX_WINDOW_DAYS
    r = await client.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": "x",
            "start_time": "2024-01-01T00:00:00Z",
            "end_time": "2026-01-01T00:00:00Z",
        },
    )
    err = r.json()["detail"][0]
    assert r.status_code == 422 and err["field"] == "end_time" and "731 days" in err["message"]
    r = await client.post(
        "/api/v1/tasks/ondemand",
        json={"keyword": "x", "required_count": settings.api_max_required_count + 1, **WINDOW},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "required_count"
    for query, field in (
        (dict(offset=HUGE), "offset"),
        (dict(start_time="0001-01-01T00:00:00Z"), "start_time"),
        (dict(username=LONG), "username"),
        (dict(min_likes=HUGE), "min_likes"),
    ):
        r = await client.get("/api/v1/data/tweets/search", params=query)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == field, r.text
    # a window at the limit is accepted
    r = await client.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": "x",
            "start_time": "2025-01-01T00:00:00Z",
            "end_time": "2026-01-02T00:00:00Z",
            "required_count": 10,
        },
    )
    assert r.status_code == 200, r.text


async def test_slices_per_task_is_a_setting(noida):
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap), api_token=TOKEN, api_max_slices_per_task=3
    )
    producer = await Producer(settings).start()
    view = TaskView(settings)
    await view.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, producer, view)),
            base_url="http://gw",
            headers=AUTH,
        ) as c:
            # 2 days long, but touching 3 calendar days: 3 day slices
            ok = await c.post(
                "/api/v1/tasks/ondemand",
                json={
                    "keyword": "x",
                    "start_time": "2026-10-01T12:00:00Z",
                    "end_time": "2026-10-03T12:00:00Z",
                },
            )
            assert ok.status_code == 200, ok.text
            r = await c.post(
                "/api/v1/tasks/ondemand",
                json={
                    "keyword": "x",
                    "start_time": "2026-10-01T00:00:00Z",
                    "end_time": "2026-10-04T00:00:01Z",
                },
            )
            err = r.json()["detail"][0]
            assert r.status_code == 422 and err["field"] == "end_time"
            assert "4 days, one search job each" in err["message"]
    finally:
        await view.stop()
        await producer.stop()


async def test_a_command_on_the_topic_with_an_unbounded_window_is_refused(make_settings):
    """The scheduler applies the gateway's bounds to commands published straight onto
    task-commands: the command is dead-lettered with the reason, no search job is cut."""
    handle = scheduler.make_handler(make_settings())
    task = OnDemandTask(
        task_id="huge",
        keyword="x",
        submitted_at=datetime.now(UTC),
        start_time=datetime(1, 1, 1, tzinfo=UTC),
        end_time=datetime(9999, 12, 31, tzinfo=UTC),
    )
    raw = ConsumerRecord(
        "task-commands",
        0,
        0,
        0,
        0,
        b"huge",
        task.encode(),
        None,
        4,
        0,
        [(SCHEMA_HEADER, task.schema_id().encode())],
    )
    outs = await handle([Incoming("task-commands", 0, 0, "huge", task, raw=raw)])
    assert [o.spec.name for o in outs] == ["dead-letters"]  # no search job
    assert "start_time" in outs[0].record.error
