"""The billed figure: unique posts per keyword collected in a calendar month (UTC), read by the
monthly statistics and the monthly cost alike, so both always bill the same count."""

from __future__ import annotations

from datetime import date

from libs.storage.clickhouse import ClickHouseStore


async def unique_posts_per_keyword(
    ch: ClickHouseStore, month: date, keyword: str | None = None
) -> dict[str, int]:
    """{keyword: unique posts} for the month starting at `month` (one keyword, or all).

    keyword_month_counts holds each (keyword, month)'s set of post ids (migration 013): the
    union of the sets stored now, exact before any merge."""
    params: dict = {"m": month}
    where = "month = {m:Date}"
    if keyword is not None:
        where += " AND keyword = {k:String}"
        params["k"] = keyword
    rows = await ch.query_rows(
        f"SELECT keyword, uniqExactMerge(posts) FROM keyword_month_counts WHERE {where} "
        "GROUP BY keyword ORDER BY keyword",
        params,
    )
    return {k: int(n) for k, n in rows}
