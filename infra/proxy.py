"""A small real HTTP proxy for local runs and tests: `python -m infra.proxy --port P`.

Forwards absolute-form requests (`GET http://host/path HTTP/1.1`, what clients send to an
HTTP proxy for http:// URLs) and tunnels `CONNECT host:port` (https:// URLs). On the same port
it also speaks SOCKS5 (RFC 1928 CONNECT; no authentication, or any username/password per
RFC 1929) and SOCKS4/4a (CONNECT, any user id), told apart by the first byte. Each request is logged as one line
`proxy METHOD TARGET STATUS` on stdout (`proxy SOCKS5 host:port ok` for a tunnel), so a test
can see which proxy an account used. Not for production: no authentication, no limits.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from urllib.parse import urlsplit

HOP_HEADERS = {b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"}


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - closing a socket the peer may have reset
            pass


async def _read_head(reader: asyncio.StreamReader, prefix: bytes = b"") -> list[bytes] | None:
    head = prefix + await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    return lines if lines and lines[0] else None


def _socks5_reply(code: int) -> bytes:
    """A SOCKS5 reply (RFC 1928 §6) with an IPv4 0.0.0.0:0 bound address: 0 succeeded,
    5 connection refused, 7 command not supported, 8 address type not supported."""
    return b"\x05" + bytes([code]) + b"\x00\x01" + bytes(6)


async def _socks5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A SOCKS5 CONNECT tunnel; the version byte (5) was read already."""
    methods = await reader.readexactly((await reader.readexactly(1))[0])
    if 0 in methods:
        writer.write(b"\x05\x00")
    elif 2 in methods:  # username/password: any pair is accepted
        writer.write(b"\x05\x02")
        await writer.drain()
        await reader.readexactly(1)
        await reader.readexactly((await reader.readexactly(1))[0])
        await reader.readexactly((await reader.readexactly(1))[0])
        writer.write(b"\x01\x00")
    else:
        writer.write(b"\x05\xff")
        return
    await writer.drain()
    _ver, cmd, _rsv, atyp = await reader.readexactly(4)
    if atyp == 1:
        host = ".".join(str(b) for b in await reader.readexactly(4))
    elif atyp == 3:
        host = (await reader.readexactly((await reader.readexactly(1))[0])).decode("idna")
    elif atyp == 4:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    else:
        writer.write(_socks5_reply(8))
        return
    port = int.from_bytes(await reader.readexactly(2), "big")
    target = f"{host}:{port}"
    if cmd != 1:
        writer.write(_socks5_reply(7))
        _say(f"proxy SOCKS5 {target} unsupported-command")
        return
    await _tunnel(
        reader,
        writer,
        host,
        port,
        f"SOCKS5 {target}",
        (_socks5_reply(0), "ok"),
        (_socks5_reply(5), "refused"),
    )


async def _socks4(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A SOCKS4 (or SOCKS4a: a host name after the user id) CONNECT tunnel; the version byte
    (4) was read already. Replies are 0x00 0x5A granted / 0x5B rejected."""
    cmd = (await reader.readexactly(1))[0]
    port = int.from_bytes(await reader.readexactly(2), "big")
    ip = await reader.readexactly(4)
    await reader.readuntil(b"\x00")  # user id: any is accepted
    if ip[:3] == b"\x00\x00\x00" and ip[3] != 0:  # SOCKS4a
        host = (await reader.readuntil(b"\x00"))[:-1].decode("idna")
    else:
        host = ".".join(str(b) for b in ip)
    target = f"{host}:{port}"
    granted, rejected = b"\x00\x5a" + bytes(6), b"\x00\x5b" + bytes(6)
    if cmd != 1:
        writer.write(rejected)
        _say(f"proxy SOCKS4 {target} unsupported-command")
        return
    await _tunnel(
        reader, writer, host, port, f"SOCKS4 {target}", (granted, "ok"), (rejected, "refused")
    )


async def _tunnel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    label: str,
    ok: tuple[bytes, str],
    failed: tuple[bytes, str],
) -> None:
    """Connect to host:port, answer the client `ok` (or `failed`), then pipe both ways."""
    try:
        up_r, up_w = await asyncio.open_connection(host, port)
    except OSError:
        writer.write(failed[0])
        _say(f"proxy {label} {failed[1]}")
        return
    writer.write(ok[0])
    await writer.drain()
    _say(f"proxy {label} {ok[1]}")
    await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        try:
            first = await reader.readexactly(1)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if first in (b"\x04", b"\x05"):
            try:
                await (_socks4 if first == b"\x04" else _socks5)(reader, writer)
            except (
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ConnectionError,
                UnicodeError,
            ):
                pass
            return
        prefix = first
        while True:  # keep-alive: one client connection may carry many requests
            try:
                lines = await _read_head(reader, prefix)
                prefix = b""
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            if lines is None:
                return
            method, target, version = lines[0].decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                await _tunnel(
                    reader,
                    writer,
                    host,
                    int(port),
                    f"CONNECT {target}",
                    (b"HTTP/1.1 200 Connection established\r\n\r\n", "200"),
                    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "502"),
                )
                return
            await _forward(method, target, version, lines[1:], reader, writer)
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - closing a socket the peer may have reset
            pass


async def _forward(
    method: str,
    target: str,
    version: str,
    header_lines: list[bytes],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    u = urlsplit(target)
    if u.scheme != "http" or not u.hostname:
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        _say(f"proxy {method} {target} 400")
        return
    headers = []
    length = 0
    for h in header_lines:
        name, _, value = h.partition(b":")
        if name.strip().lower() in HOP_HEADERS:
            continue
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
        headers.append(h)
    body = await reader.readexactly(length) if length else b""
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    try:
        up_r, up_w = await asyncio.open_connection(u.hostname, u.port or 80)
    except OSError:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        _say(f"proxy {method} {target} 502")
        return
    try:
        up_w.write(
            f"{method} {path} HTTP/1.1\r\n".encode()
            + b"\r\n".join(headers)
            + b"\r\nconnection: close\r\n\r\n"
            + body
        )
        await up_w.drain()
        head = await up_r.readuntil(b"\r\n\r\n")
        rest = await up_r.read()  # upstream closes after the response (connection: close)
    finally:
        up_w.close()
    status_line, _, resp_headers = head.partition(b"\r\n")
    kept = [
        h
        for h in resp_headers[:-4].split(b"\r\n")
        if h
        and h.partition(b":")[0].strip().lower() not in HOP_HEADERS
        and h.partition(b":")[0].strip().lower() != b"content-length"
        and h.partition(b":")[0].strip().lower() != b"transfer-encoding"
    ]
    rest = _dechunk(rest) if b"transfer-encoding: chunked" in resp_headers.lower() else rest
    writer.write(
        status_line
        + b"\r\n"
        + b"\r\n".join(kept)
        + f"\r\ncontent-length: {len(rest)}\r\n\r\n".encode()
        + rest
    )
    await writer.drain()
    _say(f"proxy {method} {target} {status_line.split(b' ')[1].decode()}")


def _dechunk(data: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(data):
        j = data.index(b"\r\n", i)
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0:
            break
        out += data[j + 2 : j + 2 + size]
        i = j + 2 + size + 2
    return bytes(out)


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(handle, host, port, limit=1 << 20)
    _say(f"proxy listening on {host}:{port}")
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m infra.proxy", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args(argv)
    try:
        asyncio.run(serve(a.host, a.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
