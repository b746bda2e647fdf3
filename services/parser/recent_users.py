"""Which users this parser published lately, so an unchanged user is not published again.

A search for one keyword meets the same authors page after page. Each sighting was a full
XUser record (a few KB with its raw JSON) through the producer, the broker and the
dedup-counter's users insert, only to replace an identical row. A user is published again
when anything X says about them changed (their raw JSON differs) or when `resend_s` has passed
since the last time, so `users.seen_at` is at most that stale. The memory is per process and
bounded; losing it (restart, another replica) only means publishing a user once more, which the
ReplacingMergeTree users table absorbs.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class RecentUsers:
    def __init__(self, resend_s: float, max_users: int = 50_000, clock=time.monotonic):
        self.resend_s = resend_s
        self.max_users = max_users
        self._clock = clock
        self._sent: OrderedDict[str, tuple[int, float]] = OrderedDict()  # id → (raw hash, when)

    def should_publish(self, user_id: str, raw_data: str) -> bool:
        """True for a user to publish now (and remembered as published). Asked with the
        user's raw JSON before any XUser exists: the parser builds records only for the users
        this accepts (most users of a keyword's pages were sent moments ago)."""
        if self.resend_s <= 0:
            return True
        now = self._clock()
        fingerprint = hash(raw_data)
        last = self._sent.get(user_id)
        if last is not None and last[0] == fingerprint and now - last[1] < self.resend_s:
            return False
        self._sent[user_id] = (fingerprint, now)
        self._sent.move_to_end(user_id)
        while len(self._sent) > self.max_users:
            self._sent.popitem(last=False)
        return True
