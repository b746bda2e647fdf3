"""twscrape 0.20.1's own API pages through the simulator: proves X-compatibility."""

from __future__ import annotations

import twscrape.api
from twscrape import API, AccountsPool
from twscrape.queue_client import XClIdGenStore


class _StaticGen:
    def calc(self, method: str, path: str) -> str:
        return "static-transaction-id"


async def test_twscrape_search_pages_through_simulator(sim_url, admin, tmp_path, monkeypatch):
    monkeypatch.setenv("TWS_TELEMETRY", "0")
    monkeypatch.setattr(twscrape.api, "GQL_URL", f"{sim_url}/i/api/graphql")

    async def _get(cls, username, proxy=None, cookies=None, fresh=False):
        return _StaticGen()

    monkeypatch.setattr(XClIdGenStore, "get", classmethod(_get))
    pool = AccountsPool(db_file=str(tmp_path / "accounts.db"), raise_when_no_account=True)
    await pool.add_account_cookies("simuser", "auth_token=tws-token; ct0=tws-ct0")
    api = API(pool, raise_when_no_account=True)

    q = "twscrape since:2026-01-01 until:2026-01-01_02:00:00_UTC"
    expected = admin.get("/_sim/corpus", params={"query": q}).json()["ids"]
    assert len(expected) == 120
    tweets = [t async for t in api.search(q)]
    ids = [str(t.id) for t in tweets]
    main = [i for i in ids if i in set(expected)]
    assert main == expected  # every corpus post, once, newest first
    assert set(ids) - set(expected)  # plus the quoted tweets twscrape also parses
    t0 = tweets[0]
    assert t0.user.username and t0.rawContent and t0.date.year == 2026
    log = [e for e in admin.get("/_sim/log").json() if e["account"] == "tws-token"]
    assert log and all(e["operation"] == "SearchTimeline" and e["method"] == "GET" for e in log)
