"""A search's page and total over `posts` at millions of posts (issue 17), exact without FINAL
over every match.

`posts` is a ReplacingMergeTree: a post collected again is a second row until ClickHouse
merges the parts, and FINAL (the newest row of each post) merges every matching row's key at
read time, ~1 s for a million matches on a busy 2-core host. Instead:

- The page, newest first: the ids of the newest matching posts are read without FINAL, in
  the table's own order (post ids are time-ordered snowflakes: `ORDER BY post_id DESC` stops
  after the page; a user's posts come from author_posts, sorted by handle then id), then only
  those posts are read with FINAL, from post_cards (post_cards.py), and checked against the
  filter on their newest row. A post
  matches the same on every row except by its counts (post_search.where_parts), so they all
  pass unless a count changed since an older row matched. A filter with few matches (up to
  FEW posts, any order) is read the same way, all its posts by id; otherwise (and for
  deep pages) FINAL over the matches answers.
- The total: the posts among the matching rows, distinct ids (with a count filter, each
  post's newest row decides: the rows FINAL keeps). ClickHouse reads the matching rows up
  to one past Settings.api_exact_total_limit and stops: when they were all of them the total
  is exact; otherwise it is a lower bound (that many posts match, at least), flagged
  X-Total-Count-Exact: false. exact_total=true reads every match (about a second for a
  million). A user's posts (no other filter) are always exact: uniqExact over that user's
  author_posts, which holds nothing but their ids.
"""

from __future__ import annotations

from libs.storage.clickhouse import ClickHouseStore

from . import post_cards
from .post_search import PostFilter, where_parts

# Newest-first pages ending past this many posts, and filters matching more than FEW posts
# (in another order), are read with FINAL over the matches, not by id: reading a post by id
# reads its granule (128 rows of post_cards).
MAX_CHECKED = 1000
FEW = 200
# FINAL with a WHERE: its conditions apply to each post's newest row only (a count condition
# moved to PREWHERE, or a skip index dropping the granule of a newer row, would let an older
# row match). Conditions every row of a post shares may be PREWHERE on purpose (total()).
FINAL_FILTERS = {"optimize_move_to_prewhere_if_final": 0, "use_skip_indexes_if_final_exact_mode": 1}


def author_only(f: PostFilter) -> bool:
    """The filter is a user's posts and nothing else (any sort)."""
    rest = f.model_dump(exclude={"username", "sort", "end_inclusive"})
    return f.username is not None and rest == PostFilter().model_dump(
        exclude={"username", "sort", "end_inclusive"}
    )


def _author(f: PostFilter) -> dict:
    return {"u": "@" + (f.username or "").lstrip("@").lower()}


async def total(
    ch: ClickHouseStore, f: PostFilter, exact_limit: int, exact: bool
) -> tuple[int, bool]:
    """(the number of posts the filter matches, whether it is exact)."""
    if author_only(f):
        rows = await ch.query_rows(
            "SELECT uniqExact(post_id) FROM author_posts WHERE author_lc = {u:String}", _author(f)
        )
        return rows[0][0], True
    fixed, changing, p = where_parts(f)
    where = " AND ".join(fixed + changing) or "1"
    if not changing:
        # What every row of a post says alike: the distinct ids among the matching rows.
        if exact:
            sql = f"SELECT uniqExact(post_id) FROM posts WHERE {where}"
            return (await ch.query_rows(sql, p))[0][0], True
        # The matching rows up to one past the limit (ClickHouse stops reading there): when
        # that was all of them the count is exact, else a lower bound.
        rows = await ch.query_rows(
            f"SELECT post_id FROM posts WHERE {where} LIMIT {{probe:UInt64}}",
            {**p, "probe": exact_limit + 1},
        )
        return len({r[0] for r in rows}), len(rows) <= exact_limit
    # A count condition: each post's newest row decides, the row FINAL keeps: WHERE filters
    # after FINAL chose it (the settings say so whatever the server's defaults). What every
    # row of a post says alike filters before, as PREWHERE (read first, dropping the granules
    # and rows of every other post). One pass over the matches, stopping at the LIMIT.
    pre = f"PREWHERE {' AND '.join(fixed)} " if fixed else ""
    sql = f"SELECT post_id FROM posts FINAL {pre}WHERE {' AND '.join(changing)}"
    if exact:
        rows = await ch.query_rows(f"SELECT count() FROM ({sql})", p, settings=FINAL_FILTERS)
        return rows[0][0], True
    rows = await ch.query_rows(
        f"SELECT count() FROM ({sql} LIMIT {{probe:UInt64}})",
        {**p, "probe": exact_limit + 1},
        settings=FINAL_FILTERS,
    )
    return rows[0][0], rows[0][0] <= exact_limit


async def _newest_ids(ch: ClickHouseStore, src: str, cond: str, params: dict, n: int) -> list[str]:
    """Up to n distinct ids of the newest 19-digit posts of `src` matching `cond`. A plain
    ORDER BY post_id DESC LIMIT reads the sorting key backwards and stops early (LIMIT 1 BY
    post_id, or DISTINCT, would sort every match); a post stored twice before a merge is two
    adjacent rows, so a short answer asks again for twice as many rows."""
    want = n
    while True:
        rows = await ch.query_rows(
            f"SELECT post_id FROM {src} WHERE ({cond}) AND length(post_id) = 19 "
            "ORDER BY post_id DESC LIMIT {lim:UInt64}",
            {**params, "lim": want},
        )
        ids = list(dict.fromkeys(r[0] for r in rows))
        if len(ids) >= n or len(rows) < want:
            return ids[:n]
        want *= 2


async def page(
    ch: ClickHouseStore, f: PostFilter, cols: list[str], limit: int, offset: int
) -> list[dict]:
    """The page of posts (their newest rows), in the filter's order."""
    fixed, changing, p = where_parts(f)
    all_of = " AND ".join(fixed + changing) or "1"
    select = f"SELECT {', '.join(cols)} FROM posts FINAL"
    paged = {**p, "lim": limit, "off": offset}
    if author_only(f):
        src, cond, cp = "author_posts", "author_lc = {u:String}", _author(f)
    else:
        src, cond, cp = "posts", all_of, p
    # Each candidate's newest row is read with FINAL and checked against the counts'
    # conditions (the others hold for every row of a post): all pass unless a count changed
    # since an older row matched. From post_cards (post_cards.py), unless raw_data is asked for.
    checked = f"post_id IN {{ids:Array(String)}} AND ({' AND '.join(changing) or '1'})"

    async def by_id(order_limit: str, params: dict) -> list[dict]:
        if "raw_data" not in cols:
            return await post_cards.read(ch, cols, checked, params, order_limit, FINAL_FILTERS)
        return await ch.query_dicts(
            f"{select} WHERE {checked} {order_limit}", params, settings=FINAL_FILTERS
        )

    if f.sort == "newest" and offset + limit <= MAX_CHECKED:
        # 19-digit ids (every post since mid-2018) sort as their time; shorter, older ids all
        # come after them: a page that reaches them is answered below.
        ids = await _newest_ids(ch, src, cond, cp, offset + limit)
        if len(ids) == offset + limit:
            rows = await by_id("ORDER BY post_id DESC", {**p, "ids": ids})
            if len(rows) == len(ids):
                return rows[offset:]
    # Few matches (a user with a handful of posts, a rare word): all of them by id, sorted.
    few = await ch.query_rows(
        f"SELECT DISTINCT post_id FROM {src} WHERE {cond} LIMIT {{lim:UInt64}}",
        {**cp, "lim": FEW + 1},
    )
    if len(few) <= FEW:
        return await by_id(
            f"ORDER BY {f.order_by} LIMIT {{lim:UInt32}} OFFSET {{off:UInt64}}",
            {**paged, "ids": [r[0] for r in few]},
        )
    if f.sort == "newest":
        # Deep pages: FINAL, still reading the sorting key backwards.
        rows = await ch.query_dicts(
            f"{select} WHERE ({all_of}) AND length(post_id) = 19 ORDER BY post_id DESC "
            "LIMIT {lim:UInt32} OFFSET {off:UInt64}",
            paged,
            settings=FINAL_FILTERS,
        )
        if len(rows) == limit:
            return rows
    return await ch.query_dicts(
        f"{select} WHERE {all_of} ORDER BY {f.order_by} LIMIT {{lim:UInt32}} OFFSET {{off:UInt64}}",
        paged,
        settings=FINAL_FILTERS,
    )
