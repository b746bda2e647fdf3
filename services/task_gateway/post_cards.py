"""A page's posts read by id from post_cards (migration 014): each stored row of `posts` as
one JSON object of the 49 columns a page answers (every column but raw_data and version),
sorted by post id in small granules, so 50 scattered posts are ~150 small reads instead of
~4,000.

`read(...)` answers the same dicts `query_dicts` gives for those columns of `posts FINAL`:
ClickHouse's JSON writes DateTime64 as text and may quote 64-bit integers (server settings),
so those columns are turned back into datetimes and ints here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from libs.storage.clickhouse import ClickHouseStore

TIME_COLUMNS = frozenset(
    {"post_time", "original_post_time", "original_quote_post_time", "collected_at"}
)
INT_COLUMNS = frozenset(
    {
        "comment_count",
        "retweet_count",
        "like_count",
        "quote_count",
        "view_count",
        "bookmark_count",
        "original_comment_count",
        "original_retweet_count",
        "original_like_count",
        "original_quote_count",
        "original_view_count",
        "original_bookmark_count",
    }
)


def _time(v: Any) -> datetime | None:
    """A DateTime64 as ClickHouse's JSON wrote it (date_time_output_format simple, iso or
    unix_timestamp) as the datetime a column read gives (naive UTC for simple)."""
    if v is None or isinstance(v, datetime):
        return v
    if isinstance(v, int | float):
        return datetime.fromtimestamp(v, UTC)
    return datetime.fromisoformat(v)


def from_card(card: str | bytes, cols: list[str]) -> dict[str, Any]:
    """The columns `cols` of a card, typed as a column read types them."""
    row = orjson.loads(card)
    out = {}
    for c in cols:
        v = row[c]
        if c in TIME_COLUMNS:
            v = _time(v)
        elif c in INT_COLUMNS and isinstance(v, str):
            v = int(v)
        out[c] = v
    return out


async def read(
    ch: ClickHouseStore,
    cols: list[str],
    where: str,
    params: dict,
    order_limit: str,
    settings: dict,
) -> list[dict[str, Any]]:
    """`cols` of the newest row (FINAL) of each post matching `where` (over post_id,
    post_time, like_count, retweet_count), in `order_limit`'s order."""
    rows = await ch.query_rows(
        f"SELECT card FROM post_cards FINAL WHERE {where} {order_limit}", params, settings=settings
    )
    return [from_card(r[0], cols) for r in rows]
