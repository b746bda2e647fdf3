"""In-memory request log (GET /_sim/log?since_seq=N)."""

from __future__ import annotations

import time
from collections import deque


class RequestLog:
    def __init__(self, maxlen: int = 500_000):
        self.entries: deque[dict] = deque(maxlen=maxlen)
        self.seq = 0

    def add(
        self,
        method: str,
        path: str,
        operation: str | None,
        account: str | None,
        raw_query: str | None,
        cursor: str | None,
        status: int,
        received: float | None = None,
    ) -> None:
        """One answered request; `ts` is when it was answered, `received` when it came in
        (they differ by a slow fault's delay or a held request's wait)."""
        self.seq += 1
        now = time.time()
        self.entries.append(
            {
                "seq": self.seq,
                "ts": now,
                "received": received if received is not None else now,
                "method": method,
                "path": path,
                "operation": operation,
                "account": account,
                "raw_query": raw_query,
                "cursor": cursor,
                "status": status,
            }
        )

    def since(self, seq: int) -> list[dict]:
        if not self.entries or seq >= self.seq:
            return []
        first = self.entries[0]["seq"]
        start = max(0, seq + 1 - first)
        return list(self.entries)[start:]

    def clear(self) -> None:
        self.entries.clear()
