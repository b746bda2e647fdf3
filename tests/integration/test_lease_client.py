"""The scraper side of account leases through the real broker, against a scripted manager:
what it asks for, and when."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from libs.kafka import Outgoing, Producer, decode, follow_from_end
from libs.leases import EXPIRY_MARGIN_S, LeaseClient
from libs.records.accounts import LeaseGrant, LeaseRelease, LeaseRequest
from libs.secretbox import SecretBox
from libs.topics import LEASE_GRANTS, LEASE_REQUESTS

OP = "SearchTimeline"


class ScriptedManager:
    """Reads what one requester sends on account-lease-requests and answers as told."""

    def __init__(self, settings, producer: Producer, requester: str):
        self.settings, self.producer, self.requester = settings, producer, requester
        self.box = SecretBox.from_settings(settings)
        self.consumer = None
        self.pending: list = []

    async def start(self) -> ScriptedManager:
        self.consumer, _ = await follow_from_end(
            self.settings, LEASE_REQUESTS, f"scripted-manager-{self.requester}"
        )
        return self

    async def stop(self) -> None:
        await self.consumer.stop()

    async def next(self, kind: type, timeout_s: float):
        """The requester's next record of `kind` (others are kept for later calls)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, rec in enumerate(self.pending):
                if isinstance(rec, kind):
                    return self.pending.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind.__name__} from the client in {timeout_s}s")
            batch = await self.consumer.getmany(timeout_ms=int(min(left, 0.2) * 1000))
            for msgs in batch.values():
                for m in msgs:
                    if m.key and m.key.decode() == self.requester:
                        self.pending.append(decode(LEASE_REQUESTS, m))

    async def grant(self, req: LeaseRequest, account: str, lasts_s: float) -> LeaseGrant:
        now = datetime.now(UTC)
        g = LeaseGrant(
            request_id=req.request_id,
            requester=req.requester,
            lease_id=uuid.uuid4().hex,
            account_id=account,
            operation=req.operation,
            budget=5,
            expires_at=datetime.fromtimestamp(time.time() + lasts_s, UTC),
            secrets=self.box.seal(
                {"auth_token": f"tok-{account}", "ct0": f"ct0-{account}", "proxy_url": None}
            ),
            granted_at=now,
        )
        await self.producer.send_and_wait(Outgoing(LEASE_GRANTS, req.requester, g))
        return g


async def test_a_caller_whose_grant_is_of_no_use_asks_again_at_once(noida):
    """A grant answers a request: the manager has dropped it from its queue. When the lease it
    brings cannot be used (here it ends within the client's safety margin), the waiting caller
    asks again right away, rather than after account_request_wait_s, and gives the dead lease
    back unused."""
    settings = noida.settings(account_key="lease-client-test", account_request_wait_s=60)
    producer = await Producer(settings).start()
    requester = f"lease-test-{uuid.uuid4().hex[:8]}"
    manager = await ScriptedManager(settings, producer, requester).start()
    client = await LeaseClient(settings, producer, requester=requester).start()
    try:
        acquiring = asyncio.create_task(client.acquire(OP, "task-1"))
        first = await manager.next(LeaseRequest, 20)
        dead = await manager.grant(first, "a", lasts_s=EXPIRY_MARGIN_S / 2)

        second = await manager.next(LeaseRequest, 5)  # not 60 s later
        assert second.request_id != first.request_id
        released = await manager.next(LeaseRelease, 5)
        assert (released.lease_id, released.used) == (dead.lease_id, 0)
        assert not acquiring.done()

        await manager.grant(second, "b", lasts_s=30)
        account = await asyncio.wait_for(acquiring, 10)
        assert (account.name, account.auth_token) == ("b", "tok-b")
    finally:
        await client.stop()
        await manager.stop()
        await producer.stop()
