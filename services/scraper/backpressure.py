"""The scraper waits for the parser: no request to X while the parser lags too far.

On the embedded broker every record a topic holds is in the broker's memory. The parser is the
pipeline's slowest stage, so a scraper free to page on fills raw-pages with pages the parser
has not read, and the broker holds them all (its retention guard will not delete unread
records): at 1M posts that was GBs. The gate holds each slice's next request to X while the
parser's consumer group has more than `scraper_max_parser_lag_pages` raw pages unread, and
opens again when it has read them. Nothing is collected later for it: the task completes when
the parser is done either way, and the CPU the scraper does not spend goes to the parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import TopicPartition

from libs import lag, log_dirs
from libs.settings import Settings
from libs.topics import RAW_PAGES, topic_name

log = logging.getLogger(__name__)

PARSER_SERVICE = "parser"  # services/parser/handler.py SERVICE: its consumer group


class ParserLagGate:
    def __init__(
        self, settings: Settings, max_pages: int, interval_s: float = 0.5, max_bytes: int = 0
    ):
        self.settings = settings
        self.max_pages = max_pages
        self.max_bytes = max_bytes  # per partition; 0 = no limit
        self.interval_s = interval_s
        self.group = f"{settings.topic_prefix}{PARSER_SERVICE}"
        self.topic = topic_name(RAW_PAGES, settings.topic_prefix)
        self.lag = 0
        self.lag_bytes = 0.0  # the most unread bytes on one partition (with max_bytes)
        self._open = asyncio.Event()
        self._open.set()
        self._task: asyncio.Task | None = None

    async def start(self) -> ParserLagGate:
        if self.max_pages > 0 or self.max_bytes > 0:
            self._task = asyncio.create_task(self._watch(), name="parser-lag-gate")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def holding(self) -> bool:
        """Requests to X are held now."""
        return not self._open.is_set()

    async def wait(self) -> None:
        """Return once the parser lags no more than the limit (at once when it does not)."""
        await self._open.wait()

    def _positions(self, snap: lag.Snapshot) -> dict[TopicPartition, int]:
        """Where the parser reads next on each raw-pages partition: its committed offset, or
        the partition's start where it never committed. Its consumer starts a partition at
        the earliest record it holds, so all of those are unread; leaving such a partition
        out let the scraper fill it unseen until the parser's first commit there (a 1M-post
        bench run: the retention guard raised raw-pages 3 times in its first minutes)."""
        committed = snap.committed.get(self.group, {})
        return {
            tp: c if (c := committed.get(tp)) is not None else snap.start.get(tp, 0)
            for tp in snap.end
        }

    def unread(self, snap: lag.Snapshot) -> int:
        """Raw pages the parser has not read: end − its position, summed over partitions."""
        at = self._positions(snap)
        return sum(max(0, end - at[tp]) for tp, end in snap.end.items())

    async def unread_bytes(self, snap: lag.Snapshot) -> float:
        """The most bytes the parser has not read on one raw-pages partition."""
        at = self._positions(snap)
        held = await log_dirs.partition_bytes(self.settings.kafka_bootstrap)
        return max(
            (
                log_dirs.unread_bytes(tp, snap.start.get(tp, 0), end, at[tp], held)
                for tp, end in snap.end.items()
            ),
            default=0.0,
        )

    def _over(self, share: float) -> bool:
        """The parser lags by more than `share` of a limit."""
        pages = self.max_pages > 0 and self.lag > self.max_pages * share
        return pages or (self.max_bytes > 0 and self.lag_bytes > self.max_bytes * share)

    async def _watch(self) -> None:
        while True:
            try:
                snap = await lag.snapshot(
                    self.settings, {self.group: [self.topic]}, with_members=False
                )
                self.lag = self.unread(snap)
                if self.max_bytes > 0:
                    self.lag_bytes = await self.unread_bytes(snap)
                if self._over(1.0) and self._open.is_set():
                    log.info(
                        "parser %d raw pages (%.0f KB on one partition) behind: requests to X wait",
                        self.lag,
                        self.lag_bytes / 1024,
                    )
                    self._open.clear()
                elif not self._over(0.5) and not self._open.is_set():
                    self._open.set()  # half way down: no flapping at the limit
            except Exception as e:  # noqa: BLE001 - a broker fault: never hold X on it
                log.warning("parser lag unknown (%s: %s): requests go on", type(e).__name__, e)
                self._open.set()
            await asyncio.sleep(self.interval_s)
