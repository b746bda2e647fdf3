"""`xget kol-followings [flags]` and `xget kol import FILE`."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from libs.kafka import Producer
from libs.settings import Settings

from .cache import KolCache
from .job import KolJob, Mode, Stats
from .progress import ProgressBar, summary
from .sources import SourceError, make_source
from .store import Kol, KolPlanner, KolWriter, StoreUnavailable


def add_commands(sub) -> None:
    f = sub.add_parser(
        "kol-followings",
        help="fetch every KOL's following list into ClickHouse",
        description="Fetch the following list of every KOL in twitter_kol not yet done. Every "
        "answer is cached on the kol-pages topic first; nothing is ever fetched "
        "twice, and Ctrl-C loses nothing.",
    )
    f.add_argument("--limit", type=int, metavar="N", help="at most N KOLs (the next N not done)")
    f.add_argument(
        "--test",
        action="store_true",
        help="first 3 KOLs, cached data only: check the path, say what would be called",
    )
    f.add_argument(
        "--dry-run",
        action="store_true",
        help="call the source for real, write nothing to ClickHouse, print the rows",
    )
    f.add_argument(
        "--resume",
        action="store_true",
        help="only process pages already in the cache; never call the source",
    )
    f.add_argument("--cache-status", action="store_true", help="what the cache holds")
    f.add_argument("--clear-cache", action="store_true", help="forget the cache and progress")
    f.add_argument("--yes", action="store_true", help="do not ask before --clear-cache")
    f.add_argument(
        "--api-key", metavar="KEY", help="API key for the api source (default: XGET_KOL_API_KEY)"
    )
    f.add_argument("--source", choices=["x", "api"], help="override XGET_KOL_SOURCE")
    k = sub.add_parser("kol", help="manage the KOL list")
    k.add_argument("action", choices=["import"])
    k.add_argument(
        "file",
        type=Path,
        help="text or CSV file: one handle (@name) or id a line (first column of a CSV)",
    )


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def main(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "source", None):
        settings = settings.model_copy(update={"kol_source": args.source})
    try:
        if args.cmd == "kol":
            return asyncio.run(import_file(settings, args.file))
        if (
            sum(
                map(
                    bool,
                    (args.test, args.dry_run, args.resume, args.cache_status, args.clear_cache),
                )
            )
            > 1
        ):
            _err("choose one of --test, --dry-run, --resume, --cache-status, --clear-cache")
            return 2
        if args.limit is not None and args.limit < 1:
            _err("--limit must be at least 1")
            return 2
        if args.cache_status:
            return asyncio.run(cache_status(settings))
        if args.clear_cache:
            if not args.yes:
                answer = input(
                    "Clear the KOL cache and progress? Cached pages will have to be "
                    "paid for again. Type 'yes': "
                )
                if answer.strip().lower() != "yes":
                    print("nothing cleared")
                    return 1
            return asyncio.run(clear_cache(settings))
        mode = Mode(dry_run=args.dry_run, resume=args.resume, test=args.test, limit=args.limit)
        return asyncio.run(followings(settings, mode, args.api_key))
    except KeyboardInterrupt:
        print(
            "\ninterrupted: everything fetched is in the cache; run again to continue",
            file=sys.stderr,
        )
        return 130


def read_entries(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        out.append(line.split(",")[0] if "," in line else line)
    return out


async def import_file(settings: Settings, path: Path) -> int:
    if not await asyncio.to_thread(path.is_file):
        _err(f"no such file: {path}")
        return 2
    try:
        added, skipped = await KolPlanner(settings.clickhouse_dsn).import_kols(read_entries(path))
    except ValueError as e:
        _err(f"{path}: {e}")
        return 2
    except StoreUnavailable as e:
        _err(f"ClickHouse unavailable: {e}")
        return 1
    print(f"imported {added} KOLs ({skipped} already listed or repeated)")
    return 0


async def _producer(settings: Settings) -> Producer:
    try:
        return await Producer(settings, "kol-cli").start()
    except Exception as e:
        raise SystemExit(
            f"error: Kafka unreachable at {settings.kafka_bootstrap} "
            f"({type(e).__name__}): the cache lives there"
        ) from e


async def cache_status(settings: Settings) -> int:
    producer = await _producer(settings)
    try:
        cache = KolCache(settings, producer)
        await cache.load()
        st = cache.stats()
    finally:
        await producer.stop()
    ok_api = st.ok_calls_by_source.get("api", 0)
    cost = ok_api * settings.kol_api_price_per_call
    print(f"cache {cache.topic}: {st.kols} KOLs, {st.pages} pages, {st.bytes / 1e6:.2f} MB")
    print(
        f"calls spent: {st.calls} ({ok_api} paid API calls answered, est. ${cost:.4f}; "
        f"{st.ok_calls_by_source.get('x', 0)} X calls)"
    )
    try:
        kols, done = await KolPlanner(settings.clickhouse_dsn).plan()
        print(f"KOLs done: {len(done)} of {len(kols)}")
    except StoreUnavailable as e:
        print(f"KOLs done: unknown (ClickHouse unavailable: {e})")
    return 0


async def clear_cache(settings: Settings) -> int:
    producer = await _producer(settings)
    try:
        deleted = await KolCache(settings, producer).clear()
    finally:
        await producer.stop()
    print(
        "cache cleared"
        + ("" if deleted else " (the broker keeps the old records; they are ignored from now on)")
    )
    try:
        await KolPlanner(settings.clickhouse_dsn).clear_progress()
        print("progress cleared: every KOL will be fetched again")
    except StoreUnavailable as e:
        _err(f"progress not cleared, ClickHouse unavailable: {e}")
        return 1
    return 0


def _print_rows(kol: Kol, rows: list[dict]) -> None:
    print(f"# {kol.label}: {len(rows)} rows for twitter_kol_all / twitter_kol_following")
    for r in rows:
        print(json.dumps(r, default=str, ensure_ascii=False))


async def followings(settings: Settings, mode: Mode, api_key: str | None) -> int:
    planner = KolPlanner(settings.clickhouse_dsn)
    if mode.test:
        try:
            print(await planner.check())
        except StoreUnavailable as e:
            _err(f"ClickHouse unavailable: {e}")
            return 1
    try:
        source = make_source(settings, api_key)
    except SourceError as e:
        if mode.calls_allowed:
            _err(str(e))
            return 2
        source = None  # --test / --resume never call it
    producer = await _producer(settings)
    writer = KolWriter(settings.clickhouse_dsn, settings.kol_store_retry_s)
    bar = ProgressBar()
    job = KolJob(
        settings,
        KolCache(settings, producer),
        source,
        planner,
        writer,
        on_progress=bar.update,
        on_rows=_print_rows if mode.dry_run else None,
    )
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_sigint() -> None:
        if job.stopping:  # second Ctrl-C: stop now (the cache already holds every answer)
            main_task.cancel()
        else:
            print("\nstopping after the call in flight (Ctrl-C again to stop now)", file=sys.stderr)
            job.stop()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    stats: Stats | None = None
    try:
        stats = await job.run(mode)
    except StoreUnavailable as e:
        _err(f"ClickHouse unavailable: {e}")
        return 1
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        bar.close()
        await writer.aclose()
        if source is not None:
            await source.aclose()
        await producer.stop()
    note = (
        " (test: nothing called or written)"
        if mode.test
        else (
            " (dry run: nothing written)"
            if mode.dry_run
            else (" (resume: cache only)" if mode.resume else "")
        )
    )
    for line in summary(stats, note):
        print(line)
    for w in stats.would_call:
        print(f"would call: {w}")
    if job.stopping and not stats.fatal_error:
        print("stopped early: run again to continue where it stopped")
    if stats.store_error or stats.fatal_error:
        return 1
    return 3 if stats.kols_failed else 0
