"""Process plumbing shared by service entry points: logging, signals, a Kafka producer."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from libs.failures import until_available
from libs.kafka import Producer
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore

# One ClickHouse store per DSN per process: chdb lets one process open a data path once, and
# the services of an embedded process (gateway, dedup-counter, reporter) share it.
_stores: dict[str, ClickHouseStore] = {}
_migrated: set[str] = set()


def setup_logging(level: str, fmt: str = "text") -> None:
    if fmt == "json":
        from libs.logjson import JsonFormatter

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    else:
        logging.basicConfig(
            level=getattr(logging, level.upper(), logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    for noisy in ("aiokafka", "httpx", "twscrape", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass


async def started_producer(
    settings: Settings, client_id: str, *, linger_ms: int | None = None, redo_replaced: bool = False
) -> Producer:
    return await Producer(
        settings, client_id, linger_ms=linger_ms, redo_replaced=redo_replaced
    ).start()


async def run_until(service, stop: asyncio.Event) -> None:
    """Run `service.run()` until it returns or `stop` is set, then stop it gracefully."""
    runner = asyncio.create_task(service.run())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
    service.stop()
    waiter.cancel()
    await runner


async def clickhouse_for(settings: Settings, *, wait: bool = True) -> ClickHouseStore:
    """The process's store for `settings.clickhouse_dsn`, migrated once; never close it.
    `wait`: a ClickHouse that is down is waited for (a service starting); False raises at
    once (an HTTP request, which answers 503 instead)."""
    store = _stores.get(settings.clickhouse_dsn)
    if store is None:
        store = _stores[settings.clickhouse_dsn] = ClickHouseStore(
            settings.clickhouse_dsn, slow_query_ms=settings.clickhouse_slow_query_ms
        )
    if settings.clickhouse_dsn not in _migrated:
        from libs.storage.migrate import apply_migrations

        migrate = lambda: asyncio.to_thread(apply_migrations, store)  # noqa: E731 - one callable handed to two waits below
        if wait:  # started while ClickHouse is down: wait for it (not ready), never exit
            await until_available("clickhouse migrations", migrate)
        else:
            await migrate()
        _migrated.add(settings.clickhouse_dsn)
    return store


async def close_stores() -> None:
    for dsn, store in list(_stores.items()):
        await store.aclose()
        _stores.pop(dsn, None)
        _migrated.discard(dsn)
