"""An operator's change of an account's caps while a scraper holds a lease of it, through the
real broker: the account-manager runs in this process (its pool, ticker and admin API on a
port of its own), the scraper side is the real lease client.

The change revokes the lease, but the holder may go on using it, with the budget of the old
caps, until it reads the revoke. The PATCH is answered only once that lease is back, so from
the answer on no request is sent with the account beyond the new cap (issue 16: a capped
task submitted right after the answer was served by the old lease, past its cap)."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from infra.local import free_port
from infra.service_process import wait_until_async
from libs.kafka import Producer
from libs.leases import LeaseClient
from libs.xclient import PageResult
from services.account_manager.main import serve
from tests.e2e.harness import fresh_prefix

OP = "SearchTimeline"


def ok_page() -> PageResult:
    return PageResult(
        outcome="ok",
        http_status=200,
        body="{}",
        entries=20,
        cursor_out="next",
        exhausted=False,
        rate_limit_limit=None,
        rate_limit_remaining=None,
        rate_limit_reset=None,
        error=None,
        elapsed_ms=5.0,
    )


async def test_a_cap_change_is_answered_once_the_lease_of_the_old_caps_is_back(noida):
    name = f"bob{uuid.uuid4().hex[:6]}"
    port = free_port()
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        x_accounts=f"{name}:tok-{name}:ct0-{name}",
        x_rate_limits=f"{OP}:50",
        account_admin_port=port,
        account_idle_check_s=0,  # no scheduled checks: the account's requests are the test's
        account_lease_ttl_s=600,  # the lease never ends by itself during the test
    )
    stop = asyncio.Event()
    manager = asyncio.create_task(serve(settings, stop))
    producer = await Producer(settings).start()
    holder = await LeaseClient(settings, producer).start()
    token = settings.api_token.get_secret_value()
    http = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )

    async def active() -> bool:
        try:
            r = await http.get(f"/api/v1/admin/accounts/{name}")
        except httpx.TransportError:
            return False  # the admin API is not listening yet
        return r.status_code == 200 and r.json()["status"] == "active"

    try:
        await wait_until_async(active, 60, "the account-manager to add the account")
        # The scraper holds the account with one request in flight, under no cap (budget 50).
        account = await asyncio.wait_for(holder.acquire(OP, "t1"), 30)
        old = holder.leases[(OP, name)]
        assert old.grant.budget == 50

        patch = asyncio.create_task(
            http.patch(f"/api/v1/admin/accounts/{name}", json={"daily_caps": {OP: 2}})
        )
        await wait_until_async(lambda: old.done, 30, "the holder to read the revoke")
        # Revoked, but its request is still out with it: the change is not answered yet.
        assert not patch.done()
        await holder.release(account, OP, ok_page())  # the holder gives the lease back
        r = await asyncio.wait_for(patch, 30)
        assert r.status_code == 200, r.text
        view = r.json()
        assert view["daily_caps"] == {OP: 2}
        assert not view["operations"][OP]["leased"]
        assert view["operations"][OP]["today"] == 1  # the request made with the old lease
        assert (OP, name) not in holder.leases

        # From the answer on, the account serves under the new cap: 1 request left today.
        await asyncio.wait_for(holder.acquire(OP, "t1"), 30)
        assert holder.leases[(OP, name)].grant.budget == 1
    finally:
        await http.aclose()
        await holder.stop()
        await producer.stop()
        stop.set()
        await asyncio.wait_for(manager, 30)
