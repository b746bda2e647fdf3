"""account-manager entry point: the account and proxy pool, leases, logins, admin API."""

from __future__ import annotations

import asyncio

from libs.settings import Settings
from services.runtime import run_until, started_producer

from .service import SERVICE, AccountManager


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    producer = await started_producer(settings, SERVICE)
    try:
        await run_until(AccountManager(settings, producer), stop)
    finally:
        await producer.stop()
