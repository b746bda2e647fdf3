"""Console progress for `xget kol-followings`: one redrawn line on a terminal, else a line per
finished KOL (logs and pipes stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .job import Stats


def line(st: Stats, width: int = 20) -> str:
    finished = st.kols_done + st.kols_failed + st.kols_pending
    frac = finished / st.kols_total if st.kols_total else 1.0
    bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
    return (
        f"KOLs {st.kols_done}/{st.kols_total} [{bar}] pages {st.pages} · rows {st.rows} · "
        f"API calls {st.api_calls} · cache hits {st.cache_hits} · "
        f"est. ${st.estimated_cost:.4f}"
    )


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, min_interval_s: float = 0.2):
        self.stream = stream or sys.stderr  # looked up now: sys.stderr may have been replaced
        self.tty = self.stream.isatty()
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._finished = -1
        self._drawn = False

    def update(self, st: Stats) -> None:
        finished = st.kols_done + st.kols_failed + st.kols_pending
        if self.tty:
            now = time.monotonic()
            if now - self._last < self.min_interval_s and finished == self._finished:
                return
            self._last = now
            self.stream.write("\r" + line(st) + "\033[K")
            self._drawn = True
        elif finished != self._finished:
            self.stream.write(line(st) + "\n")
        self._finished = finished
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def summary(st: Stats, mode_note: str = "") -> list[str]:
    out = [
        f"KOL followings{mode_note}: {st.kols_done} of {st.kols_total} KOLs complete, "
        f"{st.kols_failed} failed, {st.kols_pending} not finished",
        f"pages {st.pages} (cache hits {st.cache_hits}) · rows {st.rows} · "
        f"API calls {st.api_calls} · estimated cost ${st.estimated_cost:.4f}",
    ]
    for f in st.failures:
        out.append(f"failed: {f}")
    if st.fatal_error:
        out.append(f"stopped: {st.fatal_error}")
    if st.store_error:
        out.append(f"ClickHouse unavailable: {st.store_error}")
        out.append(
            "the fetched pages are in the cache: run `xget kol-followings --resume` when "
            "ClickHouse is back (no call to the source will be repeated)"
        )
    return out
