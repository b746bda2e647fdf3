"""Downloads one media URL: bounded concurrency, timeouts, retries with exponential backoff
for transient errors, a size cap enforced while streaming, and a magic-bytes type check.

The body is spooled (memory, then a temp file past SPOOL_MEMORY_BYTES) and hashed on the way
in, so a video near its cap never sits whole in memory. Anything that cannot become a stored
object ends as `MediaFailure` with a cause the client can read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Literal, cast

import httpx

from libs.retry import RetryPolicy, retry_after_seconds
from libs.settings import Settings

from .sniff import IMAGE_TYPES, SNIFF_BYTES, VIDEO_TYPES, declared_type, sniff

log = logging.getLogger(__name__)

Kind = Literal["image", "video"]
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
MAX_RETRY_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0  # a media host answering 5xx: retries within the job, not for hours
X_MEDIA_HOSTS = {"image": "https://pbs.twimg.com", "video": "https://video.twimg.com"}


class MediaFailure(Exception):
    """The URL cannot be stored; `cause` says why (recorded on the result, never retried)."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


class _Transient(Exception):
    """Worth another attempt: connection trouble, 5xx, 429, 408."""

    def __init__(self, cause: str, retry_after: float | None = None):
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


@dataclass
class Download:
    body: BinaryIO  # positioned at 0; close() when done
    size: int
    sha256: str
    content_type: str  # from the magic bytes

    def close(self) -> None:
        self.body.close()


def source_url(url: str, kind: Kind, settings: Settings) -> str:
    """Where to fetch an X media URL: X's host, or the mirror/simulator the settings name."""
    base = settings.x_media_base if kind == "image" else settings.x_video_base
    host = X_MEDIA_HOSTS[kind]
    if base and url.startswith(host + "/"):
        return base.rstrip("/") + url[len(host) :]
    return url


class Fetcher:
    """`media_concurrency` clients of one connection each, lent one per request.

    Not one client with a pool of `media_concurrency` connections: httpcore checks every pooled
    connection for expiry on each request and each release (an anyio attribute lookup per
    connection), which with 16 connections cost ~14% of the service's CPU (py-spy). A client
    per slot checks one. The lending queue is also the concurrency bound.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.retry = RetryPolicy(
            settings.media_backoff_s, MAX_BACKOFF_S, max_retry_after_s=MAX_RETRY_AFTER_S
        )
        tls = httpx.create_ssl_context()  # shared: one CA bundle load, not one per client
        self._idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        self._clients = [
            httpx.AsyncClient(
                timeout=httpx.Timeout(settings.media_timeout_s),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                follow_redirects=True,
                headers={"user-agent": "xget-media/1"},
                verify=tls,
            )
            for _ in range(settings.media_concurrency)
        ]
        for client in self._clients:
            self._idle.put_nowait(client)
        self.requests = 0  # HTTP requests made (for stats and tests)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def fetch(self, url: str, kind: Kind) -> Download:
        """Download `url` (an X media URL) or raise MediaFailure with the cause."""
        cap = (
            self.settings.media_max_image_bytes
            if kind == "image"
            else self.settings.media_max_video_bytes
        )
        target = source_url(url, kind, self.settings)
        attempts = self.settings.media_attempts
        for attempt in range(1, attempts + 1):
            client = await self._idle.get()  # a slot per request, not held while backing off
            try:
                return await self._get(client, target, kind, cap)
            except _Transient as t:
                transient = t
            finally:
                self._idle.put_nowait(client)
            if attempt == attempts:
                raise MediaFailure(f"{transient.cause} after {attempts} attempts") from None
            delay = self.retry.delay(attempt - 1, transient.retry_after)
            log.info(
                "media %s: %s; retry %d/%d in %.2fs",
                target,
                transient.cause,
                attempt,
                attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _get(self, client: httpx.AsyncClient, url: str, kind: Kind, cap: int) -> Download:
        self.requests += 1
        try:
            async with client.stream("GET", url) as rep:
                status = rep.status_code
                if status in (408, 429) or status >= 500:
                    raise _Transient(
                        f"http {status}", retry_after_seconds(rep.headers.get("retry-after"))
                    )
                if status != 200:
                    raise MediaFailure(f"http {status}")
                length = rep.headers.get("content-length")
                if length and length.isdigit() and int(length) > cap:
                    raise MediaFailure(f"too large: {int(length)} > {cap} bytes")
                return await self._read(rep, kind, cap)
        except httpx.TransportError as e:  # connect, timeouts, a connection cut mid-body
            raise _Transient(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None

    async def _read(self, rep: httpx.Response, kind: Kind, cap: int) -> Download:
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
        sha = hashlib.sha256()
        size = 0
        head = b""
        content_type: str | None = None
        try:
            async for chunk in rep.aiter_bytes():
                if content_type is None:
                    head += chunk[:SNIFF_BYTES]
                    if len(head) < SNIFF_BYTES:
                        body.write(chunk)
                        sha.update(chunk)
                        size += len(chunk)
                        continue
                    content_type = self._check_type(head, kind, rep)
                size += len(chunk)
                if size > cap:
                    raise MediaFailure(
                        f"too large: more than {cap} bytes (stopped reading at {size})"
                    )
                sha.update(chunk)
                body.write(chunk)
            if content_type is None:  # a body shorter than SNIFF_BYTES
                content_type = self._check_type(head, kind, rep)
        except BaseException:
            body.close()
            raise
        body.seek(0)
        # A SpooledTemporaryFile is a binary file object (typeshed does not say BinaryIO).
        return Download(cast(BinaryIO, body), size, sha.hexdigest(), content_type)

    @staticmethod
    def _check_type(head: bytes, kind: Kind, rep: httpx.Response) -> str:
        found = sniff(head)
        wanted = IMAGE_TYPES if kind == "image" else VIDEO_TYPES
        if found not in wanted:
            what = "an image" if kind == "image" else "a video"
            declared = declared_type(rep.headers.get("content-type"))
            lie = " (the bytes say otherwise)" if declared in wanted else ""
            raise MediaFailure(f"not {what}: {declared}{lie}")
        return found
