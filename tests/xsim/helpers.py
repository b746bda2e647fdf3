from __future__ import annotations

import itertools

import orjson

from libs.xclient import PageResult, XAccount, XClient

_n = itertools.count(1)


def account(prefix: str = "acc") -> XAccount:
    """A fresh account (own rate-limit buckets)."""
    n = next(_n)
    return XAccount(f"{prefix}{n}", f"tok-{prefix}-{n}", f"ct0-{prefix}-{n}")


def entries(body: str) -> list[dict]:
    doc = orjson.loads(body)
    ins = doc["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"]
    return [e for i in ins for e in i.get("entries", [])]


def post_ids(body: str) -> list[str]:
    return [e["entryId"][6:] for e in entries(body) if e["entryId"].startswith("tweet-")]


def tweets(body: str) -> list[dict]:
    out = []
    for e in entries(body):
        if e["entryId"].startswith("tweet-"):
            r = e["content"]["itemContent"]["tweet_results"]["result"]
            out.append(r.get("tweet", r))
    return out


async def page_all(
    client: XClient, acc: XAccount, query: str, count: int | None = None, max_pages: int = 500
) -> tuple[list[str], list[PageResult]]:
    ids: list[str] = []
    results: list[PageResult] = []
    cursor = None
    for _ in range(max_pages):
        r = await client.search_page(acc, query, cursor, count=count)
        results.append(r)
        assert r.outcome == "ok", r
        ids += post_ids(r.body)
        if r.exhausted:
            return ids, results
        cursor = r.cursor_out
    raise AssertionError("timeline did not end")
