"""Gateway validation/auth/idempotency and the parser's dead letters, on the real broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from libs.kafka import ConsumerLoop, Producer
from libs.records.base import BODY_HEADER, SCHEMA_HEADER
from libs.records.dead_letter import DeadLetter
from libs.records.pages import RawPage
from libs.topic_table import TopicTable
from libs.topics import DEAD_LETTERS, POSTS, RAW_PAGES, topic_name
from services.parser.handler import SERVICE, handle
from services.task_gateway.api import create_app
from services.task_gateway.task_view import TaskView
from tests.e2e.harness import fresh_prefix

WINDOW = {"start_time": "2026-10-01T00:00:00Z", "end_time": "2026-10-02T00:00:00Z"}


async def test_gateway_validates_authenticates_and_is_idempotent(noida):
    settings = noida.settings(topic_prefix=fresh_prefix(noida.bootstrap), api_token="tok")
    producer = await Producer(settings).start()
    view = TaskView(settings)
    await view.start()
    app = create_app(settings, producer, view)
    auth = {"Authorization": "Bearer tok"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as c:
            assert (await c.get("/health")).status_code == 200
            r = await c.post("/api/v1/tasks/ondemand", json={"keyword": "x", **WINDOW})
            assert r.status_code == 401
            r = await c.post(
                "/api/v1/tasks/ondemand",
                headers={"Authorization": "Bearer no"},
                json={"keyword": "x", **WINDOW},
            )
            assert r.status_code == 401

            bad = {
                "keyword": "x",
                "start_time": "2026-10-03T00:00:00Z",
                "end_time": "2026-10-02T00:00:00Z",
            }
            r = await c.post("/api/v1/tasks/ondemand", headers=auth, json=bad)
            assert r.status_code == 422
            assert r.json()["detail"][0]["field"] == "end_time"
            r = await c.post(
                "/api/v1/tasks/ondemand",
                headers=auth,
                json={"keyword": "x", "priority": 11, **WINDOW},
            )
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == "priority"
            r = await c.post(
                "/api/v1/tasks/ondemand", headers=auth, json={"keyword": "   ", **WINDOW}
            )
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == "keyword"
            r = await c.post(
                "/api/v1/tasks/ondemand",
                headers=auth,
                json={"keyword": "x", "filters": {"lang": "en", "min_faves": -5}, **WINDOW},
            )
            assert r.status_code == 422
            assert r.json()["detail"][0]["field"] == "filters.min_faves"
            for hook, why in (
                ("http://127.0.0.1:9/hook", "non-public"),
                ("http://10.0.0.7/hook", "non-public"),
                ("file:///etc/passwd", "http(s)"),
            ):
                r = await c.post(
                    "/api/v1/tasks/ondemand",
                    headers=auth,
                    json={"keyword": "x", "callback_url": hook, **WINDOW},
                )
                assert r.status_code == 422, hook
                err = r.json()["detail"][0]
                assert err["field"] == "callback_url" and why in err["message"], err

            body = {"task_id": "same-1", "keyword": "tesla", "required_count": 10, **WINDOW}
            r1 = await c.post("/api/v1/tasks/ondemand", headers=auth, json=body)
            r2 = await c.post("/api/v1/tasks/ondemand", headers=auth, json=body)
            assert r1.status_code == r2.status_code == 200
            assert r1.json()["task_id"] == r2.json()["task_id"] == "same-1"
            r3 = await c.post(
                "/api/v1/tasks/ondemand", headers=auth, json={**body, "required_count": 11}
            )
            assert r3.status_code == 409

            st = (await c.get("/api/v1/tasks/same-1/status", headers=auth)).json()
            assert st["status"] == "pending" and st["progress"]["target"] == 10
            assert (await c.get("/api/v1/tasks/nope/status", headers=auth)).status_code == 404
    finally:
        await view.stop()
        await producer.stop()

    # Exactly one command reached the topic for the two identical submissions.
    table = await TopicTable(settings, view.commands.spec).start()
    await table.wait_caught_up()
    await table.stop()
    assert list(table.rows) == ["same-1"]


async def test_parser_dead_letters_bad_records_and_keeps_going(noida):
    settings = noida.settings(topic_prefix=fresh_prefix(noida.bootstrap))
    producer = await Producer(settings).start()
    raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await raw.start()
    topic = topic_name(RAW_PAGES, settings.topic_prefix)
    good_body = (
        __import__("pathlib").Path(__file__).resolve().parents[2].parent
        / "shared/fixtures/x/raw_search.json"
    ).read_text()

    def page(n: int, body: str | None, final: bool = False) -> RawPage:
        return RawPage(
            task_id="t1",
            slice_id="s0",
            page_no=n,
            keyword="k",
            operation="SearchTimeline",
            query="k",
            response=body,
            requested_at=datetime.now(UTC),
            entries=20,
            final=final,
            end_reason="exhausted" if final else None,
        )

    def v1_value(p: RawPage) -> bytes:  # as written before v2: the body inside the value
        return orjson.dumps({**orjson.loads(p.encode()), "response": p.response})

    try:
        # 1) not JSON at all, 2) unknown schema version, 3) a valid v2 record whose X body
        # (its xget-body header) is truncated, 4) a good v1 page that ends the slice.
        await raw.send_and_wait(
            topic, b"{not json", key=b"t1", headers=[(SCHEMA_HEADER, b"xget.RawPage/v2")]
        )
        await raw.send_and_wait(
            topic,
            page(0, good_body).encode(),
            key=b"t1",
            headers=[(SCHEMA_HEADER, b"xget.RawPage/v9")],
        )
        await raw.send_and_wait(
            topic,
            page(1, good_body[:5000]).encode(),
            key=b"t1",
            headers=[(SCHEMA_HEADER, b"xget.RawPage/v2"), (BODY_HEADER, good_body[:5000].encode())],
        )
        await raw.send_and_wait(
            topic,
            v1_value(page(2, good_body, final=True)),
            key=b"t1",
            headers=[(SCHEMA_HEADER, b"xget.RawPage/v1")],
        )

        loop = ConsumerLoop(settings, SERVICE, [RAW_PAGES], handle, producer)
        runner = asyncio.create_task(loop.run())
        dead = TopicTable(settings, DEAD_LETTERS)
        letters: list[DeadLetter] = []
        dead._on_record = lambda _k, r: letters.append(r)
        await dead.start()
        posts = TopicTable(settings, POSTS)
        await posts.start()
        assert await dead.wait_for(lambda: len(letters) >= 3, 30), letters
        assert await posts.wait_for(
            lambda: "t1" in posts.rows and type(posts.rows["t1"]).__name__ == "SliceEnd", 30
        )
        loop.stop()
        await runner
        await dead.stop()
        await posts.stop()
    finally:
        await raw.stop()
        await producer.stop()

    causes = sorted(d.error for d in letters)
    assert any(c.startswith("undecodable record") for c in causes), causes
    assert any("unknown schema" in c and "v9" in c for c in causes), causes
    assert any("page 1 of t1/s0 unparsable" in c for c in causes), causes
    # the dead letter keeps the page's body, which travelled outside the value
    (truncated,) = [d for d in letters if "page 1 of t1/s0" in d.error]
    assert truncated.body == good_body[:5000]
    assert all(d.service == SERVICE and d.source_topic == topic for d in letters)
