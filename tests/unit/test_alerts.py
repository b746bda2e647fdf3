"""The alert conditions on their thresholds (settings), and an alert's life: pending for
XGET_ALERT_FOR_S, firing once, resolved once, delivered as Alertmanager's webhook JSON."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.alerts import AlertBook, Facts, evaluate, webhook_body
from libs.records.accounts import AccountState, ProxyState
from libs.settings import Settings

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def acct(n: int, status: str) -> AccountState:
    return AccountState(account_id=f"a{n}", name=f"a{n}", status=status, added_at=T0, updated_at=T0)


def proxy(n: int, status: str = "healthy", **kw) -> ProxyState:
    return ProxyState(
        proxy_id=f"p{n}", display="x", status=status, added_at=T0, updated_at=T0, **kw
    )


def names(s: Settings, **facts) -> set[str]:
    base = {"now": T0.timestamp(), "accounts": [], "proxies": []}
    return {f.name for f in evaluate(s, Facts(**{**base, **facts}))}


S = Settings(
    _env_file=None,
    alert_healthy_accounts_min_share=0.5,
    alert_min_usable_accounts=2,
    alert_error_rate_max=0.2,
    alert_error_min_requests=10,
    alert_healthy_proxies_min_share=0.5,
    alert_min_usable_proxies=1,
    alert_consumer_lag_max=100,
)


def test_account_conditions_on_their_thresholds():
    two_of_four = [acct(1, "active"), acct(2, "rate_limited"), acct(3, "suspended")]
    two_of_four.append(acct(4, "needs_login"))
    assert names(S, accounts=two_of_four) == set()  # 50% healthy is not under 50%; 2 usable
    one_of_three = [acct(1, "active"), acct(2, "suspended"), acct(3, "banned")]
    assert names(S, accounts=one_of_three) == {"XGetHealthyAccountsLow", "XGetAccountShortage"}
    # operator-disabled accounts are not part of the pool's share
    assert "XGetHealthyAccountsLow" not in names(
        S, accounts=[acct(1, "active"), acct(2, "active"), acct(3, "disabled")]
    )


def test_error_rates_need_enough_requests_and_more_than_the_share():
    many = [acct(i, "active") for i in range(3)]
    assert "XGetXErrorRate" not in names(S, accounts=many, x_requests=9, x_errors=9)
    assert "XGetXErrorRate" not in names(S, accounts=many, x_requests=10, x_errors=2)
    assert "XGetXErrorRate" in names(S, accounts=many, x_requests=10, x_errors=3)
    assert "XGetProxyErrorRate" in names(S, accounts=many, proxy_requests=10, proxy_errors=3)


def test_proxy_conditions_only_when_proxies_are_configured():
    many = [acct(i, "active") for i in range(3)]
    assert names(S, accounts=many, proxies=[]) == set()
    ok = [proxy(1), proxy(2, "dead")]
    assert names(S, accounts=many, proxies=ok) == set()
    expired = proxy(3, expires_at=T0)
    got = names(S, accounts=many, proxies=[proxy(1, "dead"), expired])
    assert got == {"XGetHealthyProxiesLow", "XGetProxyShortage"}
    # A disabled proxy is the operator's choice, not a shortage of healthy ones.
    assert names(S, accounts=many, proxies=[proxy(1), proxy(2, disabled=True)]) == set()


def test_lag_dead_letters_and_stuck_tasks_name_their_subject():
    many = [acct(i, "active") for i in range(3)]
    fs = evaluate(
        S,
        Facts(
            now=0,
            accounts=many,
            proxies=[],
            lags={("parser", "raw-pages"): 101, ("reporter", "collected"): 100},
            dead_letters=2,
            stuck_tasks={"od-1": 4000.0},
        ),
    )
    by = {(f.name, tuple(sorted(f.labels.items()))): f for f in fs}
    assert set(by) == {
        ("XGetConsumerLag", (("group", "parser"), ("topic", "raw-pages"))),
        ("XGetDeadLetters", ()),
        ("XGetTaskStuck", (("task_id", "od-1"),)),
    }
    assert (
        "xget lag --group parser"
        in by[fs[0].name, (("group", "parser"), ("topic", "raw-pages"))].action
    )


def test_an_alert_fires_after_its_for_time_once_and_resolves_once():
    s = Settings(_env_file=None, alert_for_s=60)
    book = AlertBook(s)
    f = evaluate(s, Facts(now=0, accounts=[], proxies=[]))  # no account: a shortage
    assert [x.name for x in f] == ["XGetAccountShortage"]
    assert book.update(f, 1000) == [] and book.pending()
    assert book.update(f, 1059) == []
    (fired,) = book.update(f, 1060)
    assert fired.state == "firing" and book.firing() == [fired]
    assert book.update(f, 1100) == []  # delivered once, not on every evaluation
    (resolved,) = book.update([], 1200)
    assert resolved.state == "resolved" and list(book.recent) == [resolved]
    body = webhook_body(resolved)
    assert body["status"] == "resolved" and body["version"] == "4"
    (one,) = body["alerts"]
    assert one["labels"]["alertname"] == "XGetAccountShortage"
    assert one["annotations"]["action"].startswith("Add accounts")
    assert one["endsAt"].startswith("1970-01-01T00:20:00")
    # A condition that clears while pending never fires nor resolves.
    assert book.update(f, 2000) == [] and book.update([], 2001) == []


async def test_the_delivering_replica_sends_each_state_once_including_what_it_missed():
    from services.task_gateway.alerts import AlertEvaluator

    s = Settings(_env_file=None, alert_for_s=0, alert_webhook_url="http://receiver/hook")
    owner = {"now": False}
    ev = AlertEvaluator(s, view=None, delivers=lambda: owner["now"])  # type: ignore[arg-type]
    facts = {"f": Facts(now=0, accounts=[], proxies=[])}  # no account: a shortage

    async def fake_facts() -> Facts:
        return facts["f"]

    async def no_post() -> None:
        return None

    ev.facts, ev.deliver = fake_facts, no_post  # type: ignore[method-assign]
    await ev.evaluate_once()
    assert ev.book.firing() and not ev.undelivered  # another replica delivers
    owner["now"] = True
    await ev.evaluate_once()
    await ev.evaluate_once()
    assert [b["status"] for b in ev.undelivered] == ["firing"]  # taken over: sent once
    facts["f"] = Facts(now=1, accounts=[acct(i, "active") for i in range(5)], proxies=[])
    await ev.evaluate_once()
    await ev.evaluate_once()
    assert [b["status"] for b in ev.undelivered] == ["firing", "resolved"]
    assert ev.view_all()["recent"][0]["state"] == "resolved"
