"""Bytes each partition's log holds on a broker (Kafka's DescribeLogDirs, v1).

The embedded broker's memory follows the bytes its topics hold, while offsets count records: a
record of raw-pages is ~16 KB (zstd), one of posts ~0.4 KB. The retention guard and the
scraper's gate compare a consumer group's unread records to a retention in bytes through
this. aiokafka has no client for it, so this sends the one request itself (v1: no tagged
fields). One broker: the embedded one (a cluster would answer per broker, for its replicas).
"""

from __future__ import annotations

import asyncio
import itertools
import struct

from aiokafka import TopicPartition

API_KEY, API_VERSION = 35, 1
CLIENT_ID = b"xget-log-dirs"
_correlation = itertools.count(1)


def _request(correlation_id: int) -> bytes:
    # Request header v1 (api key, version, correlation id, client id); topics = null: all.
    body = struct.pack(">hhih", API_KEY, API_VERSION, correlation_id, len(CLIENT_ID))
    body += CLIENT_ID + struct.pack(">i", -1)
    return struct.pack(">i", len(body)) + body


def parse_response(data: bytes) -> dict[TopicPartition, int]:
    """partition → bytes, summed over log dirs, from a DescribeLogDirs v0/v1 response body
    (after its length prefix)."""
    pos = 8  # correlation id, throttle_time_ms
    sizes: dict[TopicPartition, int] = {}

    def take(fmt: str) -> tuple:
        nonlocal pos
        out = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return out

    def string() -> str:
        nonlocal pos
        (n,) = take(">h")
        s = data[pos : pos + max(n, 0)].decode()
        pos += max(n, 0)
        return s

    (dirs,) = take(">i")
    for _ in range(max(dirs, 0)):
        (error,) = take(">h")
        string()  # the log dir
        if error:
            raise RuntimeError(f"DescribeLogDirs: error code {error}")
        (topics,) = take(">i")
        for _ in range(max(topics, 0)):
            name = string()
            (parts,) = take(">i")
            for _ in range(max(parts, 0)):
                partition, size, _lag, _future = take(">iqq?")
                tp = TopicPartition(name, partition)
                sizes[tp] = sizes.get(tp, 0) + size
    return sizes


async def partition_bytes(bootstrap: str, timeout_s: float = 10.0) -> dict[TopicPartition, int]:
    """Bytes every partition on the (first) bootstrap broker holds."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)), timeout_s
    )
    try:
        correlation_id = next(_correlation) & 0x7FFFFFFF
        writer.write(_request(correlation_id))
        await writer.drain()
        (n,) = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), timeout_s))
        data = await asyncio.wait_for(reader.readexactly(n), timeout_s)
    finally:
        writer.close()
        await writer.wait_closed()
    (answered,) = struct.unpack_from(">i", data, 0)
    if answered != correlation_id:
        raise RuntimeError(f"DescribeLogDirs: answer {answered} to request {correlation_id}")
    return parse_response(data)


def unread_bytes(
    tp: TopicPartition, start: int, end: int, committed: int, held: dict[TopicPartition, int]
) -> float:
    """The bytes of `tp` a group at `committed` has not read: its unread records times the
    partition's mean record size (what it holds ÷ the records it keeps)."""
    kept = end - start
    if kept <= 0 or end <= committed:
        return 0.0
    return min(end - committed, kept) * held.get(tp, 0) / kept
