"""XClient through an account's proxy: HTTP forward, SOCKS5, SOCKS5h and SOCKS4, each seen in
the proxy's own log, and a proxy that is down classified as the proxy's fault."""

from __future__ import annotations

import socket

import pytest

from infra import local
from libs.xclient import XAccount, XClient

from .helpers import account

Q = "proxied since:2026-01-01 until:2026-01-01_06:00:00_UTC"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    handle = local.start_proxy(log_dir=tmp_path_factory.mktemp("proxy"), name="xsim-proxy")
    try:
        yield handle
    finally:
        handle.stop()


def _via(acc: XAccount, proxy_url: str) -> XAccount:
    return XAccount(acc.name, acc.auth_token, acc.ct0, proxy_url)


@pytest.mark.parametrize(
    "scheme,logged",
    [
        ("http", "proxy GET http://localhost:"),
        ("socks5", "proxy SOCKS5 127.0.0.1:"),
        ("socks5h", "proxy SOCKS5 localhost:"),
        ("socks4", "proxy SOCKS4 127.0.0.1:"),
    ],
)
async def test_search_goes_through_the_accounts_proxy(settings, proxy, scheme, logged):
    """X is addressed by name (localhost): socks5 resolves it here, socks5h at the proxy."""
    acc = _via(account(f"px{scheme}"), f"{scheme}://127.0.0.1:{proxy.port}")
    by_name = settings.x_graphql_url.replace("127.0.0.1", "localhost")
    client = XClient(settings.model_copy(update={"x_graphql_url": by_name}))
    try:
        first = await client.search_page(acc, Q, None)
        second = await client.search_page(acc, Q, first.cursor_out)
    finally:
        await client.aclose()
    assert (first.outcome, second.outcome) == ("ok", "ok")
    assert first.entries > 0 and second.cursor_out not in (None, first.cursor_out)
    assert logged in proxy.log_tail(200)


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks4"])
async def test_proxy_down_is_a_proxy_error(settings, scheme):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = XClient(settings)
    try:
        r = await client.search_page(
            _via(account("pxdown"), f"{scheme}://127.0.0.1:{port}"), Q, None
        )
    finally:
        await client.aclose()
    assert r.outcome == "proxy_error" and r.http_status is None, r


async def test_connect_tunnel_reaches_the_target_or_answers_502(settings, proxy):
    """The test proxy's CONNECT tunnel (what clients use for https:// through a proxy)."""
    import asyncio
    from urllib.parse import urlsplit

    sim = urlsplit(settings.x_graphql_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]

    async def connect(port: int) -> bytes:
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode())
        head = await r.readuntil(b"\r\n\r\n")
        if b" 200 " in head:
            w.write(
                f"GET /_sim/health HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                f"connection: close\r\n\r\n".encode()
            )
            head += await r.read()
        w.close()
        return head

    through = await connect(sim.port)
    assert through.startswith(b"HTTP/1.1 200 Connection established")
    assert b"HTTP/1.1 200 OK" in through
    assert (await connect(dead)).startswith(b"HTTP/1.1 502")
    assert f"proxy CONNECT 127.0.0.1:{sim.port} 200" in proxy.log_tail(200)


class _HeadRecorder:
    """A stand-in proxy that records each request head and answers `{}`."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.server = None

    async def __aenter__(self) -> _HeadRecorder:
        import asyncio

        async def handle(r, w):
            self.heads.append(await r.readuntil(b"\r\n\r\n"))
            w.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
            )
            await w.drain()
            w.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def _offline_client() -> XClient:
    from libs.settings import Settings

    return XClient(
        Settings(
            _env_file=None,
            x_graphql_url="http://x.example/i/api/graphql",
            x_transaction_id="static",
        )
    )


async def test_proxy_credentials_go_in_proxy_authorization():
    """user:pass in the proxy URL (percent-encoded) reach the proxy as Basic credentials and
    are not sent to X."""
    import base64

    async with _HeadRecorder() as rec:
        client = _offline_client()
        try:
            await client.search_page(
                _via(account("pxauth"), f"http://alice:p%40ss@127.0.0.1:{rec.port}"), Q, None
            )
        finally:
            await client.aclose()
    lines = rec.heads[0].decode().split("\r\n")
    assert lines[0].startswith("GET http://x.example/i/api/graphql/")
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'alice:p@ss').decode()}" in lines
    assert not any(line.lower().startswith("authorization: basic") for line in lines)


async def test_account_without_proxy_uses_the_environments_proxy(monkeypatch):
    """HTTP_PROXY from the environment (with its credentials) carries an account that has no
    proxy of its own, read once per account session; NO_PROXY for X's host goes direct."""
    import base64

    async with _HeadRecorder() as rec:
        monkeypatch.setenv("HTTP_PROXY", f"http://bob:s3cret@127.0.0.1:{rec.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = _offline_client()
        try:
            for _ in range(2):
                r = await client.search_page(account("pxenv"), Q, None)
                assert r.http_status == 200, r
        finally:
            await client.aclose()
    assert len(rec.heads) == 2
    lines = rec.heads[0].decode().split("\r\n")
    assert lines[0].startswith("GET http://x.example/i/api/graphql/")
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'bob:s3cret').decode()}" in lines

    async with _HeadRecorder() as rec:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{rec.port}")
        monkeypatch.setenv("NO_PROXY", "x.example")
        client = _offline_client()
        try:
            r = await client.search_page(account("pxnoproxy"), Q, None)
        finally:
            await client.aclose()
    assert rec.heads == [] and r.outcome == "network_error", r  # x.example is not resolvable


@pytest.mark.parametrize("scheme", ["http", "socks4", "socks5", "socks5h"])
async def test_the_managers_proxy_check_goes_through_every_scheme(settings, proxy, scheme):
    """The account-manager's health check speaks each scheme an account may use (httpx, which
    it used before, has no socks4)."""
    from services.account_manager.service import check_through

    health = settings.x_graphql_url.split("/i/api")[0] + "/_sim/health"
    assert await check_through(f"{scheme}://127.0.0.1:{proxy.port}", health) == 200
