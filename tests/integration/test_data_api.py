"""The data API against a real embedded ClickHouse: each filter narrows the posts the way a user
expects, pages add up to the exact total, fields= and raw_data, the design's names and types
(its data examples), streamed CSV / JSON Lines / XLSX exports holding exactly the search's
total, and media served from the object store through the gateway.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import httpx
import orjson
import pytest

from libs.kafka import Producer
from libs.records.posts import Post, PostMedia, XUser
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.migrate import apply_migrations
from libs.storage.objects import FileObjectStore
from libs.storage.post_rows import POST_COLUMNS, post_row
from services.dedup_counter.handler import USER_COLUMNS, user_row
from services.task_gateway import export, post_query
from services.task_gateway.api import create_app
from services.task_gateway.kol_tasks import KolTaskView
from services.task_gateway.post_search import PostFilter
from services.task_gateway.task_view import TaskView
from tests.e2e.harness import fresh_prefix

TOKEN = "data-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 10, 1, tzinfo=UTC)
WORDS = ["Python rocks", "I like rust and python", "nothing here", "PYTHON! #python", "golang"]
LANGS = ["en", "ja", "en", "es"]
TYPES = ["text", "image", "video", "retweet", "quote"]
N = 240


def make_posts() -> list[Post]:
    posts = []
    for i in range(N):
        ptype = TYPES[i % 5]
        media = (
            [PostMedia(original_url=f"https://pbs.twimg.com/media/m{i}.jpg", type="image")]
            if ptype in ("image", "video")
            else []
        )
        posts.append(
            Post(
                post_url=f"https://x.com/a{i % 7}/status/{10_000 + i}",
                post_id=str(10_000 + i),
                post_type=ptype,
                author_id=str(500 + i % 7),
                author_name=f"Author {i % 7}",
                author_handle=f"@A{i % 7}",  # case differs from the queries: handles match any case
                post_time=T0 + timedelta(hours=i),
                post_content=f"{WORDS[i % len(WORDS)]} number {i}",
                post_images=media,
                like_count=i * 3,
                retweet_count=i % 11,
                comment_count=i % 4,
                is_retweet=ptype == "retweet",
                is_quote=ptype == "quote",
                hashtags=["python"] if i % len(WORDS) == 3 else [],
                lang=LANGS[i % len(LANGS)],
                keyword="kw-a" if i % 2 else "kw-b",
                task_id="task-a" if i % 2 else "task-b",
                collected_at=T0 + timedelta(days=20, minutes=i),
                raw_data=orjson.dumps({"rest_id": str(10_000 + i), "pad": "x" * 2000}).decode(),
            )
        )
    return posts


async def _collect(store: ClickHouseStore, posts: list[Post]) -> None:
    """Store posts as the dedup-counter does: the posts, their billing rows, the tasks'
    membership (one insert, so one new part, per table)."""
    await store.insert("posts", [post_row(p) for p in posts], POST_COLUMNS)
    await store.insert(
        "keyword_month_posts",
        [
            [p.keyword, p.collected_at.date().replace(day=1), p.post_id, p.task_id, p.collected_at]
            for p in posts
        ],
        ["keyword", "month", "post_id", "task_id", "collected_at"],
    )
    await store.insert(
        "task_posts",
        [[p.task_id, p.post_id, p.keyword, p.collected_at] for p in posts],
        ["task_id", "post_id", "keyword", "collected_at"],
    )


@pytest.fixture
async def data_gw(noida, chdb_path, tmp_path):
    objects_dir = tmp_path / "objects"
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        api_token=TOKEN,
        clickhouse_dsn=f"chdb://{chdb_path}",
        object_store_url=f"file://{objects_dir}",
    )
    store = ClickHouseStore(settings.clickhouse_dsn)
    apply_migrations(store)
    posts = make_posts()
    await _collect(store, posts)
    user = XUser(
        user_id="500",
        user_name="A0",
        name="Author Zero",
        followers=42,
        verified=True,
        created_at="Wed Oct 10 20:19:24 +0000 2018",
        created_at_time=datetime(2018, 10, 10, 20, 19, 24, tzinfo=UTC),
        protected=True,
        location="Berlin",
        website="https://example.org/",
        banner_url="https://pbs.twimg.com/profile_banners/500/1",
        seen_at=T0,
    )
    await store.insert("users", [user_row(user)], USER_COLUMNS)
    await store.insert(
        "media_objects",
        [
            [
                "https://pbs.twimg.com/media/m1.jpg",
                "stored",
                "media/ab/m1.jpg",
                "http://s3/m1",
                "image/jpeg",
                4,
                1,
                1,
                2,
                T0,
            ]
        ],
        [
            "original_url",
            "status",
            "object_key",
            "oss_url",
            "content_type",
            "bytes",
            "width",
            "height",
            "version",
            "stored_at",
        ],
    )
    await FileObjectStore(objects_dir).put("media/ab/m1.jpg", b"\xff\xd8jpg", "image/jpeg")

    async def get_store():
        return store

    producer = await Producer(settings).start()
    view, kol_view = TaskView(settings), KolTaskView(settings)
    await view.start()
    await kol_view.start()
    app = create_app(settings, producer, view, get_store, kol_view)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=AUTH
        ) as client:
            yield client, posts, store
    finally:
        await kol_view.stop()
        await view.stop()
        await producer.stop()
        store.close()


async def _ids(client: httpx.AsyncClient, path: str = "/api/v1/data/tweets/search", **params):
    r = await client.get(path, params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert int(r.headers["X-Total-Count"]) == len(body)
    return [p["post_id"] for p in body]


def _expect(posts, pred) -> list[str]:
    return [p.post_id for p in sorted(posts, key=lambda p: p.post_time, reverse=True) if pred(p)]


def _words(p: Post) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", p.post_content.lower()))


async def test_each_filter_narrows_as_a_user_expects(data_gw):
    client, posts, _ = data_gw
    cases = [
        # full-text: whole words, any case, every word given
        ({"keyword": "python"}, lambda p: "python" in _words(p)),
        ({"keyword": "PYTHON rust"}, lambda p: {"python", "rust"} <= _words(p)),
        ({"keyword": "pyth"}, lambda p: False),
        ({"keyword": "#python"}, lambda p: "python" in _words(p)),
        ({"task_keyword": "kw-a"}, lambda p: p.keyword == "kw-a"),
        ({"task_id": "task-b"}, lambda p: p.task_id == "task-b"),
        ({"start_date": "2026-10-05T00:00:00Z"}, lambda p: p.post_time >= T0 + timedelta(days=4)),
        ({"start_time": "2026-10-05T00:00:00Z"}, lambda p: p.post_time >= T0 + timedelta(days=4)),
        # end_date includes its instant, end_time (the older name) excludes it
        ({"end_date": "2026-10-01T10:00:00Z"}, lambda p: p.post_time <= T0 + timedelta(hours=10)),
        ({"end_time": "2026-10-01T10:00:00Z"}, lambda p: p.post_time < T0 + timedelta(hours=10)),
        ({"username": "a3"}, lambda p: p.author_handle == "@A3"),
        ({"min_likes": 600}, lambda p: p.like_count >= 600),
        ({"min_retweets": 9}, lambda p: p.retweet_count >= 9),
        ({"has_media": "true"}, lambda p: bool(p.post_images)),
        ({"has_media": "false"}, lambda p: not p.post_images),
        ({"lang": "ja"}, lambda p: p.lang == "ja"),
        ({"post_type": ["retweet", "quote"]}, lambda p: p.post_type in ("retweet", "quote")),
        (
            {"keyword": "python", "username": "A1", "min_likes": 100, "lang": "en"},
            lambda p: (
                "python" in _words(p)
                and p.author_handle == "@A1"
                and p.like_count >= 100
                and p.lang == "en"
            ),
        ),
    ]
    for params, pred in cases:
        want = _expect(posts, pred)
        assert 0 < len(want) < N or params == {"keyword": "pyth"}, params  # each case narrows
        assert await _ids(client, **params) == want, params
    # a user's posts take the same filters
    got = await _ids(
        client, "/api/v1/data/users/a2/tweets", keyword="python", start_date="2026-10-03T00:00:00Z"
    )
    assert got == _expect(
        posts,
        lambda p: (
            p.author_handle == "@A2"
            and "python" in _words(p)
            and p.post_time >= T0 + timedelta(days=2)
        ),
    )
    # sort
    r = await client.get("/api/v1/data/tweets/search", params={"sort": "likes", "limit": 5})
    liked = [p["post_id"] for p in r.json()]
    assert liked == [p.post_id for p in sorted(posts, key=lambda p: -p.like_count)[:5]]


async def test_pages_add_up_to_the_exact_total(data_gw):
    """Following the Link header's rel="next" from the first page reads every match once, in
    order; each page says the exact total."""
    client, posts, _ = data_gw
    want = _expect(posts, lambda p: "python" in _words(p))
    seen: list[str] = []
    url: str | None = "/api/v1/data/tweets/search?keyword=python&limit=17"
    pages = 0
    while url is not None:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        assert int(r.headers["X-Total-Count"]) == len(want)
        seen += [p["post_id"] for p in r.json()]
        url = r.links.get("next", {}).get("url")
        pages += 1
    assert seen == want and pages == -(-len(want) // 17)


async def test_bad_values_name_their_field(data_gw):
    client, _, _ = data_gw
    for params, field in (
        ({"fields": "tweet_id,nope"}, "fields"),
        ({"post_type": "reel"}, "post_type"),
        (
            {"start_date": "2026-10-05T00:00:00Z", "start_time": "2026-10-04T00:00:00Z"},
            "start_date",
        ),
        ({"start_date": "2026-10-05T00:00:00Z", "end_date": "2026-10-04T00:00:00Z"}, "end_date"),
        ({"keyword": "   "}, "keyword"),
        ({"lang": "english!"}, "lang"),
        ({"min_retweets": -1}, "min_retweets"),
    ):
        r = await client.get("/api/v1/data/tweets/search", params=params)
        assert r.status_code == 422, (params, r.text)
        assert field in r.text, (params, r.text)


async def test_fields_and_raw_data(data_gw):
    client, _, _ = data_gw
    search = "/api/v1/data/tweets/search"
    r = await client.get(search, params={"limit": 50})
    full, full_total = r.json(), r.headers["X-Total-Count"]
    assert all("raw_data" not in p for p in full)
    raw = (await client.get(search, params={"limit": 50, "include_raw": "true"})).json()
    assert all(p["raw_data"].startswith('{"rest_id"') for p in raw)
    r = await client.get(search, params={"limit": 50, "fields": "tweet_id,text,like_count"})
    slim = r.json()
    assert [set(p) for p in slim] == [{"tweet_id", "text", "like_count"}] * 50
    assert r.headers["X-Total-Count"] == full_total
    assert len(orjson.dumps(slim)) * 5 < len(orjson.dumps(full)) < len(orjson.dumps(raw))
    users = (await client.get(search, params={"limit": 5, "fields": "user"})).json()
    assert all(set(p) == {"user"} and p["user"]["username"].startswith("A") for p in users)
    one = (await client.get("/api/v1/data/tweets/10001")).json()
    assert one["post_id"] == "10001" and one["raw_data"]  # the single post keeps its raw JSON


# The design's response models ("数据模型定义"): field → accepted JSON types.
TWEET_RESPONSE = {
    "tweet_id": str,
    "text": str,
    "user": dict,
    "like_count": int,
    "retweet_count": int,
    "reply_count": int,
    "quote_count": int,
    "view_count": (int, type(None)),
    "hashtags": list,
    "mentions": list,
    "urls": list,
    "media": list,
    "created_at": str,
    "collected_at": str,
}
USER_INFO = {
    "user_id": str,
    "username": str,
    "display_name": str,
    "verified": bool,
    "followers_count": int,
}
MEDIA_ITEM = {"type": str, "url": str, "width": (int, type(None)), "height": (int, type(None))}
USER_RESPONSE = {
    "user_id": str,
    "username": str,
    "display_name": str,
    "description": (str, type(None)),
    "verified": bool,
    "protected": bool,
    "followers_count": int,
    "following_count": int,
    "tweet_count": int,
    "location": (str, type(None)),
    "website": (str, type(None)),
    "profile_image_url": (str, type(None)),
    "created_at": (str, type(None)),
    "collected_at": str,
}


def _conforms(obj: dict, model: dict) -> None:
    for k, t in model.items():
        assert k in obj, f"missing {k}"
        assert isinstance(obj[k], t) and not (t is int and isinstance(obj[k], bool)), (k, obj[k])


async def test_design_examples_answer_the_designs_fields(data_gw):
    client, _, _ = data_gw
    # 1. 搜索推文: GET /api/v1/data/tweets/search?keyword=python&limit=50
    r = await client.get("/api/v1/data/tweets/search?keyword=python&limit=50")
    assert r.status_code == 200
    items = r.json()
    assert isinstance(items, list) and items
    for t in items:
        _conforms(t, TWEET_RESPONSE)
        _conforms(t["user"], USER_INFO)
        for m in t["media"]:
            _conforms(m, MEDIA_ITEM)
        datetime.fromisoformat(t["created_at"])
    a0 = next(t for t in items if t["user"]["user_id"] == "500")
    assert a0["user"] == {**a0["user"], "username": "A0", "verified": True, "followers_count": 42}
    # 2. 获取用户资料: GET /api/v1/data/users/{username}
    u = (await client.get("/api/v1/data/users/a0")).json()
    _conforms(u, USER_RESPONSE)
    assert (u["protected"], u["location"], u["website"], u["banner_url"]) == (
        True,
        "Berlin",
        "https://example.org/",
        "https://pbs.twimg.com/profile_banners/500/1",
    )
    assert datetime.fromisoformat(u["created_at"]) == datetime(2018, 10, 10, 20, 19, 24, tzinfo=UTC)
    # the design's data routes with its parameters
    r = await client.get(
        "/api/v1/data/users/a0/tweets",
        params={
            "limit": 100,
            "start_date": "2026-10-01T00:00:00",
            "end_date": "2026-10-30T00:00:00",
        },
    )
    assert (
        r.status_code == 200 and r.json() and all(t["user"]["username"] == "A0" for t in r.json())
    )
    tr = await client.get("/api/v1/data/analytics/trending", params={"hours": 168, "limit": 20})
    assert tr.status_code == 200
    body = tr.json()
    assert body["time_range_hours"] == 168 and isinstance(body["trending_topics"], list)


def _link_query(r: httpx.Response, rel: str) -> dict[str, list[str]] | None:
    """The query of the Link header's `rel` page (None when there is none)."""
    link = r.links.get(rel)
    return None if link is None else parse_qs(urlsplit(link["url"]).query)


async def test_lists_are_the_designs_bare_list_with_total_and_links(data_gw):
    """The design's List[TweetResponse]: a middle page is a JSON list of TweetResponses (the
    right posts), X-Total-Count the exact number of matches, Link the pages either side with
    every other parameter kept; the first page has no prev, the last no next."""
    client, posts, _ = data_gw
    want = _expect(posts, lambda p: "python" in _words(p))
    assert len(want) > 30
    for path, mine in (
        ("/api/v1/data/tweets/search", want),
        (
            "/api/v1/data/users/a1/tweets",
            _expect(posts, lambda p: p.author_handle == "@A1" and "python" in _words(p)),
        ),
    ):
        r = await client.get(path, params={"keyword": "python", "limit": 5, "offset": 5})
        assert r.status_code == 200, r.text
        page = r.json()
        assert isinstance(page, list) and len(page) == 5
        for t in page:
            _conforms(t, TWEET_RESPONSE)
            _conforms(t["user"], USER_INFO)
        assert [t["tweet_id"] for t in page] == mine[5:10]
        assert int(r.headers["X-Total-Count"]) == len(mine)
        assert _link_query(r, "next") == {"keyword": ["python"], "limit": ["5"], "offset": ["10"]}
        assert _link_query(r, "prev") == {"keyword": ["python"], "limit": ["5"], "offset": ["0"]}
        assert urlsplit(r.links["next"]["url"]).path == path
    first = await client.get("/api/v1/data/tweets/search", params={"keyword": "python"})
    assert "prev" not in first.links and _link_query(first, "next")["offset"] == ["50"]
    last = await client.get(
        "/api/v1/data/tweets/search", params={"keyword": "python", "offset": len(want) - 3}
    )
    assert len(last.json()) == 3 and "next" not in last.links
    assert _link_query(last, "prev")["offset"] == [str(max(0, len(want) - 53))]
    none = await client.get("/api/v1/data/tweets/search", params={"keyword": "pyth"})
    assert none.json() == [] and none.headers["X-Total-Count"] == "0"
    assert "Link" not in none.headers


async def test_trending_topics_count_posts_likes_and_retweets(data_gw):
    client, posts, _ = data_gw
    hours = int((datetime.now(UTC) - T0).total_seconds() // 3600) + 24
    body = (await client.get("/api/v1/data/analytics/trending", params={"hours": hours})).json()
    tagged = [p for p in posts if "python" in p.hashtags]
    assert body["trending_topics"] == [
        {
            "hashtag": "python",
            "tweet_count": len(tagged),
            "total_likes": sum(p.like_count for p in tagged),
            "total_retweets": sum(p.retweet_count for p in tagged),
        }
    ]


def _xlsx_rows(data: bytes) -> list[list[str]]:
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        sheet = ElementTree.fromstring(z.read("xl/worksheets/sheet1.xml"))
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            sst = ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
            shared = ["".join(t.itertext()) for t in sst.findall("m:si", ns)]
    rows = []
    for row in sheet.iter(f"{{{ns['m']}}}row"):
        cells = []
        for c in row.findall("m:c", ns):
            v = c.find("m:v", ns)
            if c.get("t") == "s":
                cells.append(shared[int(v.text)])
            elif c.get("t") == "inlineStr":
                cells.append("".join(c.find("m:is", ns).itertext()))
            else:
                cells.append(v.text if v is not None else "")
        rows.append(cells)
    return rows


async def test_export_holds_exactly_the_search_total(data_gw):
    client, _, _ = data_gw
    flt = {"keyword": "python", "has_media": "true"}
    s = await client.get("/api/v1/data/tweets/search", params={**flt, "limit": 1000})
    ids = [p["post_id"] for p in s.json()]
    assert 0 < int(s.headers["X-Total-Count"]) == len(ids) < N
    url = "/api/v1/data/tweets/export"

    r = await client.get(url, params={**flt, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["post_id"] for x in rows] == ids
    assert "raw_data" not in rows[0] and orjson.loads(rows[0]["post_images"])

    r = await client.get(url, params={**flt, "format": "jsonl", "include_raw": "true"})
    lines = [orjson.loads(x) for x in r.content.splitlines()]
    assert [x["post_id"] for x in lines] == ids
    assert isinstance(lines[0]["post_images"], list) and lines[0]["raw_data"]

    r = await client.get(url, params={**flt, "format": "xlsx"})
    table = _xlsx_rows(r.content)
    assert table[0][:2] == ["platform", "post_id"]
    assert [row[1] for row in table[1:]] == ids

    everything = await client.get(url, params={"format": "csv"})
    assert len(list(csv.DictReader(io.StringIO(everything.text)))) == N


async def test_export_streams_chunk_by_chunk(data_gw, monkeypatch):
    """The first rows are written out before the later chunks are even queried: the gateway
    holds one chunk at a time."""
    _, posts, store = data_gw
    queries = []

    class Counting:
        async def query_rows(self, sql, params=None, **kw):
            queries.append(sql)
            return await store.query_rows(sql, params, **kw)

        async def raw_query(self, sql, params=None, **kw):
            queries.append(sql)
            return await store.raw_query(sql, params, **kw)

    async def counting_store():
        return Counting()

    monkeypatch.setattr(export, "CHUNK_ROWS", 50)
    cols = export.EXPORT_COLUMNS
    stream = export.csv_stream(counting_store, PostFilter(sort="newest"), cols)
    first = await anext(stream)
    assert first.startswith(b"platform,post_id,")
    # the 19-digit phase (none here), then the first chunk: its bound and its rows
    assert len(queries) == 4 and first.count(b"\n") == 1 + 50
    rest = [c async for c in stream]
    body = (first + b"".join(rest)).decode()
    got = [r["post_id"] for r in csv.DictReader(io.StringIO(body))]
    assert got == _expect(posts, lambda p: True)
    assert len(rest) == 4  # 50 + 4 chunks: 50, 50, 50, 40


async def test_media_through_the_gateway(data_gw):
    client, _, _ = data_gw
    s = (await client.get("/api/v1/data/tweets/10001")).json()
    m = s["post_images"][0]
    assert m["thumbnail_url"] == "/api/v1/data/media/media/ab/m1.jpg"
    r = await client.get(m["thumbnail_url"])
    assert r.status_code == 200 and r.content == b"\xff\xd8jpg"
    assert r.headers["content-type"] == "image/jpeg"
    assert (await client.get("/api/v1/data/media/media/ab/none.jpg")).status_code == 404
    assert (await client.get("/api/v1/data/media/raw_data/2026/x.json")).status_code == 404
    assert (
        await client.get(m["thumbnail_url"], headers={"Authorization": "Bearer no"})
    ).status_code == 401


async def test_newest_first_across_id_lengths(data_gw):
    """Newest-first pages read X's time-ordered ids backwards while the page holds 19-digit
    ids only; a page that reaches the older, shorter ids still comes out in time order."""
    client, posts, store = data_gw
    extra = []
    for i in range(30):
        new = i % 2 == 0  # 19-digit ids are the newer posts (since mid-2018), 18-digit older
        pid = str((1_800_000_000_000_000_000 if new else 900_000_000_000_000_000) + i * 1000)
        when = (T0 + timedelta(days=30, minutes=i)) if new else (T0 - timedelta(days=900 - i))
        extra.append(
            posts[0].model_copy(
                update={
                    "post_id": pid,
                    "post_time": when,
                    "post_content": f"snowflake order {i}",
                    "post_url": f"https://x.com/a0/status/{pid}",
                }
            )
        )
    await store.insert("posts", [post_row(p) for p in extra], POST_COLUMNS)
    want = _expect(extra, lambda p: True)
    got = []
    for offset in range(0, 35, 7):
        r = await client.get(
            "/api/v1/data/tweets/search",
            params={"keyword": "snowflake", "limit": 7, "offset": offset},
        )
        got += [p["post_id"] for p in r.json()]
    assert got == want


async def test_counts_are_exact_before_parts_merge(data_gw):
    """A post stored more than once (collected again, by another task, or a batch delivered
    twice) before ClickHouse merges the parts is one post everywhere: search totals and pages,
    a user's posts, the monthly and the task statistics; a count filter reads the post's
    newest collection only."""
    client, posts, store = data_gw
    tables = ["posts", "task_posts", "keyword_month_posts"]
    tables += ["author_posts", "task_counts", "keyword_month_counts"]
    for t in tables:
        await store.command(f"SYSTEM STOP MERGES {t}")
    t1 = T0 + timedelta(days=40)  # collected in November 2026
    first = [
        posts[0].model_copy(
            update={
                "post_id": str(1_850_000_000_000_000_000 + i * 1000),
                "post_url": f"https://x.com/again/status/{1_850_000_000_000_000_000 + i * 1000}",
                "author_handle": "@Again",
                "post_time": T0 + timedelta(days=30, minutes=i),
                "post_content": f"collected twice {i}",
                "like_count": 500 if i % 2 == 0 else 5,
                "keyword": "kw-r",
                "task_id": "task-r1",
                "collected_at": t1,
            }
        )
        for i in range(30)
    ]
    # Collected again an hour later by another task of the keyword: the likes have changed.
    again = [
        p.model_copy(
            update={
                "like_count": 5 if p.like_count == 500 else 500,
                "task_id": "task-r2",
                "collected_at": t1 + timedelta(hours=1),
            }
        )
        for p in first
    ]
    await _collect(store, first)
    await _collect(store, again)
    # Part of the first batch delivered again within another batch (an identical insert
    # would be dropped by the tables' insert deduplication).
    await _collect(store, first[:20])
    stored = "SELECT count() FROM posts WHERE hasAllTokens(post_content, 'collected')"
    assert (await store.query_rows(stored))[0][0] == 80  # 2-3 rows a post: nothing merged

    newest = [p.post_id for p in reversed(first)]
    r = await client.get("/api/v1/data/tweets/search", params={"keyword": "collected"})
    assert r.headers["X-Total-Count-Exact"] == "true"
    assert r.headers["X-Total-Count"] == "30"
    assert [p["post_id"] for p in r.json()] == newest
    got = []
    for offset in range(0, 30, 7):  # newest-first pages: candidate ids, then their rows
        r = await client.get(
            "/api/v1/data/tweets/search",
            params={"keyword": "collected", "limit": 7, "offset": offset},
        )
        got += [p["post_id"] for p in r.json()]
    assert got == newest
    # min_likes: the newest collection decides (odd posts now have 500 likes, even ones 5).
    for limit in (50, 5):
        r = await client.get(
            "/api/v1/data/tweets/search",
            params={"keyword": "collected", "min_likes": 100, "limit": limit},
        )
        liked = [p["post_id"] for p in r.json()]
        assert r.headers["X-Total-Count"] == "15"
        assert liked == [pid for pid in newest if int(pid) // 1000 % 2 == 1][:limit]
        assert {p["like_count"] for p in r.json()} == {500}
    r = await client.get("/api/v1/data/users/again/tweets", params={"limit": 100})
    assert r.headers["X-Total-Count"] == "30" and r.headers["X-Total-Count-Exact"] == "true"
    assert [p["post_id"] for p in r.json()] == newest
    # The total reads the matches up to one past the exact limit: all of them read, it is
    # exact; more than that match, it is a lower bound, flagged; asked for, exact. Without a
    # count condition a match is a stored row (80: every row of a post says the same); with
    # one, it is a post whose newest row matches (15: FINAL).
    f = PostFilter(keyword="collected")
    liked = PostFilter(keyword="collected", min_likes=100)
    assert await post_query.total(store, f, exact_limit=80, exact=False) == (30, True)
    assert await post_query.total(store, liked, exact_limit=15, exact=False) == (15, True)
    for g, posts_matching, rows in ((f, 30, 80), (liked, 15, 15)):
        n, exact = await post_query.total(store, g, exact_limit=rows - 1, exact=False)
        assert not exact and 0 < n <= posts_matching
        assert await post_query.total(store, g, exact_limit=10, exact=True) == (
            posts_matching,
            True,
        )
    r = await client.get(
        "/api/v1/data/tweets/search", params={"keyword": "collected", "exact_total": "true"}
    )
    assert r.headers["X-Total-Count"] == "30" and r.headers["X-Total-Count-Exact"] == "true"

    month = (
        await client.get("/api/v1/statistics/monthly/kw-r", params={"year": 2026, "month": 11})
    ).json()
    assert month["unique_posts_count"] == 30
    s1 = (await client.get("/api/v1/statistics/tasks/task-r1")).json()
    s2 = (await client.get("/api/v1/statistics/tasks/task-r2")).json()
    assert (s1["total_collected"], s1["unique_posts"], s1["duplicate_rate"]) == (30, 30, 0.0)
    # task-r2 collected every post after task-r1 had: all duplicates for it
    assert (s2["total_collected"], s2["unique_posts"], s2["duplicate_rate"]) == (30, 0, 1.0)
    assert (await store.query_rows(stored))[0][0] == 80  # still unmerged


async def test_a_duplicate_is_a_post_another_task_of_the_keyword_had_first(data_gw):
    """A task's duplicates are the posts another task of its keyword collected before it did
    (the client was billed for them then): not those collected at the same instant or later,
    nor those another keyword's task had; a post a task collected twice counts once, at its
    first collection."""
    client, posts, store = data_gw
    t = T0 + timedelta(days=40)

    def post(i: int, task: str, keyword: str, at: datetime) -> Post:
        pid = str(1_860_000_000_000_000_000 + i * 1000)
        return posts[0].model_copy(
            update={
                "post_id": pid,
                "post_url": f"https://x.com/dup/status/{pid}",
                "post_content": f"overlap {i}",
                "keyword": keyword,
                "task_id": task,
                "collected_at": at,
            }
        )

    hour = timedelta(hours=1)
    d1 = [post(i, "task-d1", "kw-d", t) for i in range(10)] + [
        post(0, "task-d1", "kw-d", t + 2 * hour)
    ]
    d2 = (
        [post(i, "task-d2", "kw-d", t - hour) for i in range(4)]  # before task-d1
        + [post(i, "task-d2", "kw-d", t) for i in (4, 5)]  # at the same instant
        + [post(i, "task-d2", "kw-d", t + hour) for i in (6, 7, 10, 11)]  # after
    )
    e1 = [post(i, "task-e1", "kw-e", t - 2 * hour) for i in (8, 9)]  # another keyword, first
    for batch in (d1, d2, e1):
        await _collect(store, batch)

    async def figures(task: str) -> tuple[int, int, float]:
        r = await client.get(f"/api/v1/statistics/tasks/{task}")
        assert r.status_code == 200, r.text
        s = r.json()
        return s["total_collected"], s["unique_posts"], s["duplicate_rate"]

    assert await figures("task-d1") == (10, 6, 0.4)  # posts 0-3: task-d2 had them an hour before
    assert await figures("task-d2") == (10, 8, 0.2)  # posts 6, 7: task-d1 had them first
    assert await figures("task-e1") == (2, 2, 0.0)
    r = await client.get("/api/v1/statistics/tasks/task-none")
    assert r.status_code == 404 and "task-none" in r.text


def test_s3_objects_stream_in_chunks(s3):
    """The media route's reader against S3 (moto): the object's bytes in chunks, a missing key
    a KeyError."""
    from libs.storage.objects import open_object_store

    store = open_object_store(s3.settings())
    data = bytes(range(256)) * 1000
    store.put_sync("media/cd/v.jpg", data, "image/jpeg")
    chunks = list(store.iter_sync("media/cd/v.jpg", chunk_size=65536))
    assert len(chunks) > 1 and b"".join(chunks) == data
    with pytest.raises(KeyError):
        next(store.iter_sync("media/cd/none.jpg"))
