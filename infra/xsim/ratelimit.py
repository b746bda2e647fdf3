"""Per-account, per-operation fixed windows, like X's 15-minute windows."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import SimConfig


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # unix seconds


class RateLimiter:
    def __init__(self, config: SimConfig):
        self.config = config
        self._windows: dict[tuple[str, str], list[float]] = {}  # key -> [start, count]

    def hit(self, account: str, operation: str, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        limit = self.config.limit(operation)
        window = self.config.window_seconds
        w = self._windows.get((account, operation))
        if w is None or now >= w[0] + window:
            # Windows start on a whole second, so x-rate-limit-reset (whole seconds, as X
            # sends it) is exactly when the window ends.
            w = [float(int(now)), 0]
            self._windows[(account, operation)] = w
        w[1] += 1
        reset = int(w[0] + window)
        if w[1] > limit:
            return Decision(False, limit, 0, reset)
        return Decision(True, limit, limit - int(w[1]), reset)

    def reset(self) -> None:
        self._windows.clear()
