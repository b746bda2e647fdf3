"""Parse-speed baseline: bare `json.loads` + twscrape `parse_tweets` vs XGet's parser.

    PYTHONPATH=. python bench/bare_parse.py [--pages N] [--file PATH]

Both run in this process on the same pages, one core. "tweets" for the bare run are what
twscrape yields (quoted originals count as their own tweets); for ours, the top-level posts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TWS_TELEMETRY", "0")

from twscrape.models import parse_tweets

from libs.parsing import parse_timeline_page

FIXTURE = Path(os.environ.get("XGET_FIXTURES", "/work/shared/fixtures")) / "x" / "raw_search.json"


def bare_parse_rate(pages: list[bytes], repeat: int = 1) -> tuple[int, float]:
    """json.loads + twscrape.models.parse_tweets per page; (tweets parsed, seconds)."""
    n = 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        for page in pages:
            n += sum(1 for _ in parse_tweets(json.loads(page)))
    return n, time.perf_counter() - t0


def xget_parse_rate(pages: list[bytes], repeat: int = 1) -> tuple[int, float]:
    """libs.parsing.parse_timeline_page per page; (posts parsed, seconds)."""
    now = datetime.now(UTC)
    n = 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        for page in pages:
            n += len(
                parse_timeline_page(page, task_id="bench", keyword="bench", collected_at=now).posts
            )
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=300, help="times raw_search.json is repeated")
    ap.add_argument("--file", type=Path, default=FIXTURE)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    pages = [args.file.read_bytes()] * args.pages
    bare_parse_rate(pages[:5])  # warm-up
    xget_parse_rate(pages[:5])
    bn, bs = bare_parse_rate(pages)
    xn, xs = xget_parse_rate(pages)
    br, xr = bn / bs, xn / xs
    print(f"pages: {len(pages)} x {args.file.name}")
    print(f"bare json.loads + twscrape parse_tweets: {bn} tweets in {bs:.3f}s = {br:,.0f} tweets/s")
    print(f"xget parse_timeline_page:                {xn} posts  in {xs:.3f}s = {xr:,.0f} posts/s")
    print(
        f"ratio xget/bare (per item): {xr / br:.2f}; per page: {(len(pages) / xs) / (len(pages) / bs):.2f}"
    )


if __name__ == "__main__":
    main()
