"""The one retry policy: how long to wait before trying again, for every caller that retries
(webhook deliveries, media downloads, the KOL sources, the consumer loops' dependency waits,
the scraper's slices).

- Capped exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter"): replicas
  retrying one dependency spread out instead of hitting it in step.
- A server's `Retry-After` wins over our own backoff, in either form HTTP allows (seconds or an
  HTTP date), capped so that a hostile or broken server cannot park a worker for a day.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from datetime import UTC, datetime


def backoff_delay(attempt: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """The wait before retry `attempt` (0 for the first): a uniform time in
    [base/2, min(cap, base·2^attempt)]; base/2 keeps a retry from spinning at ~0 s."""
    ceiling = min(cap_s, base_s * 2 ** min(attempt, 32))
    return random.uniform(min(base_s / 2, ceiling), ceiling)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` header as seconds from now: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); None when absent or unreadable (the caller's own backoff applies)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an obsolete date form without a zone means GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """`base_s`·2^attempt with full jitter, capped at `cap_s`; a server's Retry-After is
    honoured up to `max_retry_after_s`."""

    base_s: float = 0.5
    cap_s: float = 30.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before retry `attempt` (0 for the first)."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after_s)
        return backoff_delay(attempt, self.base_s, self.cap_s)


class Backoff:
    """`backoff_delay` with its attempt count: `next_delay()` per failure, `reset()` on a
    success."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0):
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempts = 0

    def next_delay(self) -> float:
        self.attempts += 1
        return backoff_delay(self.attempts - 1, self.base_s, self.cap_s)

    def reset(self) -> None:
        self.attempts = 0
