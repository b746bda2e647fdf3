"""Throughput and memory flat with size: the pipeline's ratio at 1M posts ÷ its ratio at 10k.

    PYTHONPATH=. python bench/scale.py [--small 10000] [--large 1000000] [--broker-mb 512]

Runs bench/pipeline.py twice in this run, each on a fresh stack (broker with its memory
budget and the retention guard, simulator, gateway+scraper, parser, dedup-counter): one task
of `--small` posts, then one task of `--large` posts. Each ratio is end-to-end posts/s ÷ the
bare parse rate of the same pages, measured the same way for both (one streamed pass: at 1M
posts best-of-3 would add a quarter of an hour). Then it prints, for the large run, every
process's RSS at 10% and 100% of the task and its growth (target: within +20%), and the
broker's peak RSS against its budget.

The last line is `ratio: <ratio at --large ÷ ratio at --small>` (target ≥ 0.9). A 1M-post run
takes 10+ minutes on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import pipeline

RSS_GROWTH_TARGET = 0.20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=10_000, help="posts of the small task")
    ap.add_argument("--large", type=int, default=1_000_000, help="posts of the large task")
    ap.add_argument("--broker-mb", type=int, default=pipeline.BENCH_BROKER_MB)
    args = ap.parse_args()

    runs = {}
    for n in (args.small, args.large):
        print(f"=== {n:,} posts ===", flush=True)
        runs[n] = pipeline.run(n, broker_mb=args.broker_mb, bare_repeat=1)
        print(flush=True)

    small, large = runs[args.small], runs[args.large]
    print("=== scale ===")
    for n, r in runs.items():
        print(
            f"{n:>10,} posts: {r['e2e_rate']:,.1f} posts/s end to end, bare {r['bare_rate']:,.1f}"
            f" posts/s, ratio {r['ratio']:.3f}"
        )
    print(f"RSS MiB of the {args.large:,}-post task (target: within +20% from 10% to 100%):")
    rss = large["rss"]
    width = max(len(n) for n in rss["100%"])
    for name in rss["100%"]:
        at10, at100 = rss["10%"][name], rss["100%"][name]
        growth = at100 / at10 - 1 if at10 else 0.0
        flag = "" if growth <= RSS_GROWTH_TARGET else "  (over +20%)"
        print(f"  {name:<{width}}  {at10:>8.1f}  {at100:>8.1f}  {growth * 100:+5.0f}%{flag}")
    broker = large["broker"]
    print(
        f"broker peak RSS {large['peak'][broker]:.0f} MiB against its budget of "
        f"{large['broker_mb']} MiB (XGET_EMBEDDED_BROKER_MAX_MB); "
        f"at {args.small:,} posts: {small['peak'][broker]:.0f} MiB"
    )
    print(f"ratio: {large['ratio'] / small['ratio']:.3f}")


if __name__ == "__main__":
    main()
