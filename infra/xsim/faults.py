"""Injectable faults: API faults (per account/operation) and media faults (per path)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import asdict, dataclass

API_KINDS = {
    "suspended",
    "locked",
    "expired_cookies",
    "cloudflare_403",
    "rate_limit_no_headers",
    "http_5xx",
    "slow",
    "malformed_json",
    "hold",
}
MEDIA_KINDS = {"404", "huge", "html", "500", "429", "alias"}
_ids = itertools.count(1)


@dataclass
class Fault:
    kind: str
    account: str | None = None
    operation: str | None = None
    after: int = 0  # let this many matching requests through first
    count: int | None = None  # fire this many times; None = forever
    delay_s: float = 0.0
    id: int = 0
    seen: int = 0
    fired: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class FaultBook:
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._release: asyncio.Event | None = None

    async def hold(self) -> None:
        """A `hold` fault: the request waits until the faults are cleared (DELETE)."""
        if self._release is None:
            self._release = asyncio.Event()
        await self._release.wait()

    def add(self, spec: dict) -> Fault:
        kind = spec.get("kind")
        if kind not in API_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(API_KINDS)}")
        f = Fault(
            kind=kind,
            account=spec.get("account"),
            operation=spec.get("operation"),
            after=int(spec.get("after") or 0),
            count=spec.get("count"),
            delay_s=float(spec.get("delay_s") or 0.0),
            id=next(_ids),
        )
        if f.count is not None:
            f.count = int(f.count)
        self.faults.append(f)
        return f

    def clear(self) -> None:
        self.faults.clear()

    def match(self, account: str, operation: str) -> Fault | None:
        """Count this request against every matching fault; return the first that fires."""
        fired = None
        for f in self.faults:
            if f.account not in (None, account) or f.operation not in (None, operation):
                continue
            f.seen += 1
            if f.seen <= f.after or (f.count is not None and f.fired >= f.count):
                continue
            if fired is None:
                f.fired += 1
                fired = f
        return fired


@dataclass
class MediaFault:
    path_contains: str
    kind: str
    size_mb: float = 60.0
    chunked: bool = False  # huge: stream without Content-Length
    count: int | None = None  # fire this many times, then serve normally; None = forever
    retry_after: int | None = None  # 429: Retry-After seconds
    retry_after_date: bool = False  # 429: Retry-After as an HTTP date that many seconds ahead
    as_path: str = ""  # alias: answer the bytes of this media path (same bytes, two URLs)
    fired: int = 0


class MediaFaultBook:
    def __init__(self) -> None:
        self.faults: list[MediaFault] = []

    def add(self, spec: dict) -> MediaFault:
        kind = str(spec.get("kind"))
        if kind not in MEDIA_KINDS:
            raise ValueError(f"unknown media fault kind {kind!r}; one of {sorted(MEDIA_KINDS)}")
        count = spec.get("count")
        retry_after = spec.get("retry_after")
        f = MediaFault(
            str(spec.get("path_contains") or ""),
            kind,
            float(spec.get("size_mb") or 60.0),
            bool(spec.get("chunked")),
            None if count is None else int(count),
            None if retry_after is None else int(retry_after),
            bool(spec.get("retry_after_date")),
            str(spec.get("as_path") or ""),
        )
        self.faults.append(f)
        return f

    def clear(self) -> None:
        self.faults.clear()

    def match(self, path: str) -> MediaFault | None:
        """The first matching fault that still fires (counting this request against it)."""
        for f in self.faults:
            if f.path_contains in path and (f.count is None or f.fired < f.count):
                f.fired += 1
                return f
        return None
