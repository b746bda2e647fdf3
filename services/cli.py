"""`xget` command line: the composition root that wires settings, clients and services.

  xget run SERVICE [SERVICE ...]   run services (or `all`) in this process
  xget topics create               create every topic of the catalogue
  xget migrate                     apply ClickHouse migrations
  xget kol import FILE             add KOLs (handles or ids) to twitter_kol
  xget kol-followings [flags]      fetch KOL following lists (see --help)
  xget reports replay [--task ID]  re-deliver reports that went to the dead-letter topic
  xget dead-letters list|show|redrive [ID] [--service S] [--since T]
                                   dead letters: a table, one in full, re-publish (once)
  xget lag [--group G] [--watch]   lag, rate, time to drain, recommended replicas per group
  xget replay --since TIME [--task ID]   re-parse raw pages: raw-pages + raw_data/ archive (no X)
  xget accounts add|import|login|list|test|remove …   the X account pool
  xget proxies add|import|list|test|remove …          the proxy pool
  xget users add NAME --role ROLE | passwd NAME | list    console users

`xget run all` is the embedded mode: every service in one process (one chdb owner), each
still its own consumer group talking only through Kafka. In production run one service per
process/container against external Kafka, ClickHouse and S3.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import sys
from collections.abc import Coroutine
from datetime import UTC
from typing import Any, TypeVar

from libs.allocator import start_trimming
from libs.settings import Settings

T = TypeVar("T")


def run_loop(coro: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Run a command's coroutine on the configured event loop (Settings.event_loop), with the
    garbage collector tuned by Settings.gc_gen0_threshold and the C allocator's heap trimmed
    every Settings.malloc_trim_interval_s."""
    start_trimming(settings.malloc_trim_interval_s)
    if settings.gc_gen0_threshold:
        gc.set_threshold(settings.gc_gen0_threshold, *gc.get_threshold()[1:])
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# Service name → module with `async def serve(settings, stop, ...)`.
SERVICES = {
    "task-gateway": "services.task_gateway.main",
    "scraper": "services.scraper.main",
    "parser": "services.parser.main",
    "dedup-counter": "services.dedup_counter.main",
    "media-downloader": "services.media_downloader.main",
    "kol-worker": "services.kol.main",
    "reporter": "services.reporter.main",
    "account-manager": "services.account_manager.main",
}

log = logging.getLogger("xget")


async def run_services(names: list[str], settings: Settings) -> None:
    from libs.ops_server import start_ops_server
    from libs.tracing import setup_tracing, shutdown_tracing
    from services.runtime import close_stores, stop_on_signals

    stop = asyncio.Event()
    stop_on_signals(stop)
    ops = await start_ops_server(settings)  # /metrics, /livez, /readyz: one per process
    setup_tracing(settings, "xget:" + ",".join(names))
    from libs.log_shipper import LogShipper

    # WARNING+ records of this process to the service-logs topic (the console's log view).
    shipper = LogShipper(settings, "xget:" + ",".join(names)).install()
    shipping = asyncio.create_task(shipper.run(), name="log-shipper")
    tasks = {}
    for name in names:
        module = importlib.import_module(SERVICES[name])
        tasks[name] = asyncio.create_task(module.serve(settings, stop), name=name)
    log.info("running %s", ", ".join(names))
    try:
        done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        if failed:
            stop.set()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            exc = failed[0].exception()
            assert exc is not None  # `failed` holds the tasks that raised
            raise exc
    finally:
        shipper.stop()
        await asyncio.gather(shipping, return_exceptions=True)
        if ops is not None:
            ops.close()
        await close_stores()
        shutdown_tracing()  # flush the spans still queued


def _utc_time(text: str):
    from datetime import datetime

    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


async def lag_command(args, settings: Settings) -> int:
    from libs import lag
    from libs.ops_server import start_ops_server
    from services.declarations import consumer_groups

    declared = consumer_groups()
    unknown = [g for g in args.group or [] if g not in declared]
    if unknown:
        print(
            f"unknown group(s) {', '.join(unknown)}; known: {', '.join(declared)}", file=sys.stderr
        )
        return 2
    groups = {
        declared[g].group_id(settings.topic_prefix): [
            settings.topic_prefix + s.name for s in declared[g].inputs
        ]
        for g in (args.group or declared)
    }
    if not args.watch:
        print(lag.render(await lag.measure(settings, groups, args.sample, args.target)))
        return 0
    stop = asyncio.Event()
    from services.runtime import stop_on_signals

    stop_on_signals(stop)
    server = await start_ops_server(settings)
    try:
        while not stop.is_set():
            print(
                lag.render(await lag.measure(settings, groups, args.sample, args.target)),
                flush=True,
            )
    finally:
        if server is not None:
            server.close()
    return 0


async def dead_letters_command(args, settings: Settings) -> int:
    from services import dead_letters as dl

    if args.id is not None:
        try:
            one = await dl.find(settings, args.id)
        except ValueError as e:
            print(e, file=sys.stderr)
            return 2
        if one is None:
            print(f"no dead letter {args.id}", file=sys.stderr)
            return 1
        found = [one]
    elif args.action == "show":
        print("show needs a dead letter id (PARTITION/OFFSET, from list)", file=sys.stderr)
        return 2
    elif args.action == "redrive" and args.service is None and args.since is None:
        print(
            "redrive needs a dead letter id, --service or --since (every dead letter: "
            "--since 1970-01-01)",
            file=sys.stderr,
        )
        return 2
    else:
        found = [f async for f in dl.dead_letters(settings, service=args.service, since=args.since)]
    if args.action == "list":
        print(dl.render_table(found))
    elif args.action == "show":
        print(dl.render_one(found[0]))
    else:
        res = await dl.redrive(settings, found)
        for f, to in res.redriven:
            print(f"redriven {f.id} -> {to} (key {f.letter.key})")
        for f in res.refused:
            print(f"not redriven {f.id}: {f.letter.source_topic} is no topic of the catalogue")
        print(
            f"{len(res.redriven)} redriven, {len(res.skipped)} already redriven before"
            + (f", {len(res.refused)} refused" if res.refused else "")
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="xget", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run services in this process")
    run.add_argument(
        "services", nargs="+", metavar="SERVICE", help=f"one or more of: all, {', '.join(SERVICES)}"
    )
    topics = sub.add_parser("topics", help="manage topics")
    topics.add_argument("action", choices=["create"])
    sub.add_parser("migrate", help="apply ClickHouse migrations")
    from services.kol import cli as kol_cli

    kol_cli.add_commands(sub)
    reports = sub.add_parser("reports", help="webhook reports")
    reports.add_argument("action", choices=["replay"])
    reports.add_argument("--task", help="only this task's dead reports")
    from services.account_manager import cli as pool_cli

    pool_cli.add_parsers(sub)
    from services.task_gateway import users_cli

    users_cli.add_parsers(sub)
    dl = sub.add_parser("dead-letters", help="list, show or redrive dead letters")
    dl.add_argument("action", choices=["list", "show", "redrive"])
    dl.add_argument("id", nargs="?", help="PARTITION/OFFSET of one dead letter (from list)")
    dl.add_argument("--service", help="only this service's dead letters")
    dl.add_argument("--since", type=_utc_time, help="only those failed at or after this time")
    rp = sub.add_parser(
        "replay", help="re-run the parser over raw pages (raw-pages, then the raw_data/ archive)"
    )
    rp.add_argument(
        "--since",
        required=True,
        type=_utc_time,
        help="ISO time (UTC if no zone), e.g. 2026-11-01T00:00:00Z",
    )
    rp.add_argument("--task", help="only this task's pages")
    lag = sub.add_parser("lag", help="consumer lag per group and topic, with recommended replicas")
    lag.add_argument("--group", action="append", help="only this group (repeatable; no prefix)")
    lag.add_argument(
        "--sample",
        type=float,
        default=5.0,
        help="seconds between the two offset snapshots the rates come from",
    )
    lag.add_argument(
        "--target",
        type=float,
        default=300.0,
        help="drain the lag within this many seconds (for the replica count)",
    )
    lag.add_argument(
        "--watch",
        action="store_true",
        help="keep measuring and serve the figures on /metrics (a lag exporter)",
    )
    args = parser.parse_args(argv)

    settings = Settings()
    from services.runtime import setup_logging

    setup_logging(settings.log_level, settings.log_format)

    if args.cmd == "run":
        names = list(SERVICES) if "all" in args.services else args.services
        unknown = [n for n in names if n not in SERVICES]
        if unknown:
            parser.error(
                f"unknown service(s) {', '.join(unknown)}; choose from all, " + ", ".join(SERVICES)
            )
        from libs.fail_closed import check_secrets

        check_secrets(settings, names)  # exits naming each empty or default secret
        try:
            run_loop(run_services(names, settings), settings)
        except KeyboardInterrupt:
            pass
        return 0
    if args.cmd == "topics":
        from libs.topic_admin import create_from_settings

        counts = create_from_settings(settings)
        print(
            f"{len(counts)} topics ready on {settings.kafka_bootstrap} (replication factor "
            f"{settings.topic_replication_factor})"
        )
        return 0
    if args.cmd in ("kol-followings", "kol"):
        return kol_cli.main(args, settings)
    if args.cmd in ("accounts", "proxies"):
        return pool_cli.run(args, settings)
    if args.cmd == "users":
        return users_cli.run(args, settings)
    if args.cmd == "reports":
        from services.reporter.replay import replay_dead_reports

        n = run_loop(replay_dead_reports(settings, args.task), settings)
        print(f"queued {n} dead report(s) for re-delivery")
        return 0
    if args.cmd == "dead-letters":
        return run_loop(dead_letters_command(args, settings), settings)
    if args.cmd == "replay":
        from services.parser.replay import replay

        res = run_loop(replay(settings, args.since, args.task), settings)
        print(
            f"replayed {res.pages} raw page(s) of {res.tasks} task(s) ({res.archived_pages} "
            f"from the raw_data/ archive): {res.records_out} record(s) re-derived, 0 X requests"
        )
        return 0
    if args.cmd == "lag":
        return run_loop(lag_command(args, settings), settings)
    if args.cmd == "migrate":
        from libs.storage.clickhouse import ClickHouseStore
        from libs.storage.migrate import apply_migrations

        with ClickHouseStore(settings.clickhouse_dsn) as store:
            applied = apply_migrations(store)
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
