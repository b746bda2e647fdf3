"""The topic catalogue: every topic XGet uses, its partitions, key and record schemas.

Topics are created up front from this list (`xget topics create`, `make up`): neither local
broker creates them with the right partition count by itself, and production clusters usually
forbid auto-creation. A service's parallelism is capped by its input topic's partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .records.accounts import (
    AccountCommand,
    AccountEvent,
    AccountState,
    LeaseGrant,
    LeaseRelease,
    LeaseRequest,
    LeaseRevoke,
    LeaseWait,
    ProxyCommand,
    ProxyState,
    TaskAccountWait,
)
from .records.base import Record
from .records.console import AuditEntry, ConsoleUser, ServiceLog
from .records.dead_letter import DeadLetter, DeadLetterRedrive
from .records.kol import KolCacheCleared, KolFollowingsTask, KolPage, KolTaskProgress
from .records.media import MediaStored
from .records.pages import RawPage, SliceCheckpoint, SliceEnd
from .records.posts import MediaJob, Post, TaskUser, XUser

if TYPE_CHECKING:
    from .settings import Settings
from .records.reports import ReportsReplay, ReportsResume
from .records.tasks import (
    OnDemandTask,
    ScheduledTask,
    ScheduleState,
    SearchJob,
    TaskControl,
    TaskProgress,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str  # what the record key is
    schemas: tuple[type[Record], ...]
    compacted: bool = False
    retention_ms: int | None = None  # None = broker default
    doc: str = ""

    def schema_for(self, header: str | None) -> type[Record] | None:
        """The model that reads records whose xget-schema header is `header` (any version it
        reads), or None. Looked up once per consumed record, hence the table."""
        table = self.__dict__.get("_by_schema_id")
        if table is None:
            table = {i: s for s in reversed(self.schemas) for i in s.schema_ids()}
            object.__setattr__(self, "_by_schema_id", table)  # frozen: a cache, not state
        return table.get(header) if header is not None else None


# Compacted: the task view and the schedule runner rebuild from it at every start, so every
# task's definition must outlive the broker's default retention (7 days). One record per task
# id: the gateway writes a task once (a re-submission is idempotent), a scheduled run is its own
# task id, a PATCH goes to task-controls; so the latest record per key is the whole definition.
# A record whose key is not its task_id is rejected (the scheduler writes the rejection on
# task-controls) and the view ignores it.
TASK_COMMANDS = TopicSpec(
    "task-commands",
    6,
    "task_id",
    (OnDemandTask, ScheduledTask),
    compacted=True,
    doc="Client task commands (HTTP gateway or published directly by the client); compacted: "
    "every task's definition for its life.",
)
# Compacted: a job waits on the topic for as long as its task is paused or the scraper lags;
# a restarted scraper re-reads it from its group's committed offset. One job per slice key
# (a re-published run gives the same jobs), so compaction loses nothing.
SEARCH_JOBS = TopicSpec(
    "search-jobs",
    12,
    "task_id/slice_id",
    (SearchJob,),
    compacted=True,
    doc="Slices of tasks for the scraper, derived by the scheduler; keyed per slice so a "
    "task's slices spread over scraper replicas (compacted).",
)
RAW_PAGES = TopicSpec(
    "raw-pages",
    12,
    "task_id/slice_id",
    (RawPage,),
    retention_ms=30 * 24 * 3600 * 1000,
    doc="Every X response verbatim, before anything else touches it: the never-ask-twice cache.",
)
POSTS = TopicSpec(
    "posts",
    12,
    "task_id",
    (Post, SliceEnd, TaskUser),
    doc="Parsed posts (or, for user tasks, the users collected) in page order per task, each "
    "slice closed by its SliceEnd marker.",
)
SCRAPE_CHECKPOINTS = TopicSpec(
    "scrape-checkpoints",
    6,
    "task_id/slice_id",
    (SliceCheckpoint,),
    compacted=True,
    doc="Where each slice stands (scraper resume state, compacted).",
)
# Header on every post record: the task's required_count, which the dedup-counter needs and
# the client's record does not carry.
POSTS_TARGET_HEADER = "xget-required-count"

USERS = TopicSpec("users", 6, "user_id", (XUser,), doc="Users seen in responses.")
MEDIA_JOBS = TopicSpec("media-jobs", 6, "original_url", (MediaJob,), doc="Media to store.")
MEDIA_STORED = TopicSpec(
    "media-stored",
    12,
    "task_id",
    (MediaStored,),
    doc="One result per media job: object key and URL, size, dimensions, or the failure cause.",
)
TASK_PROGRESS = TopicSpec(
    "task-progress",
    6,
    "task_id",
    (TaskProgress,),
    compacted=True,
    doc="Latest progress per task from the dedup-counter (compacted).",
)
SCHEDULE_STATE = TopicSpec(
    "schedule-state",
    3,
    "task_id",
    (ScheduleState,),
    compacted=True,
    doc="The last run each scheduled task fired (compacted): no run lost or fired twice.",
)
TASK_CONTROLS = TopicSpec(
    "task-controls",
    6,
    "task_id",
    (TaskControl,),
    compacted=True,
    doc="Latest pause/resume/cancel/priority state per task (compacted); read before each page.",
)
REPORT_CONTROLS = TopicSpec(
    "report-controls",
    6,
    "task_id",
    (ReportsResume, ReportsReplay),
    doc="Client/operator commands to the reporter: resume a paused task, replay a dead report.",
)
# The account pool. The account-manager is one active instance: its inputs have one partition
# each, so in a consumer group (range assignment) one member owns them all and a second replica
# is a hot standby that takes over with the state below.
ACCOUNT_COMMANDS = TopicSpec(
    "account-commands",
    1,
    "account_id/proxy_id",
    (AccountCommand, ProxyCommand),
    doc="Operator changes to accounts and proxies (CLI, admin API).",
)
ACCOUNT_EVENTS = TopicSpec(
    "account-events",
    1,
    "account_id",
    (AccountEvent,),
    doc="Every X request's outcome, reported by the scraper that made it.",
)
LEASE_REQUESTS = TopicSpec(
    "account-lease-requests",
    1,
    "requester",
    (LeaseRequest, LeaseRelease),
    doc="Scrapers ask for and give back account leases.",
)
LEASE_GRANTS = TopicSpec(
    "account-lease-grants",
    1,
    "requester",
    (LeaseGrant, LeaseWait, LeaseRevoke),
    retention_ms=3600 * 1000,
    doc="The manager's answers; each scraper replica reads them from the end.",
)
ACCOUNT_STATE = TopicSpec(
    "account-state",
    1,
    "account_id",
    (AccountState,),
    compacted=True,
    doc="The account store: status, windows, leases, encrypted credentials (compacted).",
)
PROXY_STATE = TopicSpec(
    "proxy-state",
    1,
    "proxy_id",
    (ProxyState,),
    compacted=True,
    doc="The proxy pool with health (compacted).",
)
TASK_ACCOUNT_WAITS = TopicSpec(
    "task-account-waits",
    6,
    "task_id",
    (TaskAccountWait,),
    compacted=True,
    doc="Tasks waiting for an account, with the earliest time one frees up (compacted).",
)
DEAD_LETTERS = TopicSpec(
    "dead-letters",
    3,
    "original key",
    (DeadLetter,),
    retention_ms=30 * 24 * 3600 * 1000,
    doc="Records a service could not handle, with the cause; kept 30 days for "
    "`xget dead-letters redrive`.",
)
DEAD_LETTER_REDRIVES = TopicSpec(
    "dead-letter-redrives",
    3,
    "topic/partition/offset",
    (DeadLetterRedrive,),
    compacted=True,
    doc="Which dead letters `xget dead-letters redrive` re-published (compacted): each once.",
)

# KOL followings have their own raw topic rather than raw-pages: the parser consumes raw-pages
# as search timelines (it would dead-letter these), and `--resume`/`--cache-status` read the
# whole KOL cache, which should not mean reading every search page. Kept until cleared.
KOL_PAGES = TopicSpec(
    "kol-pages",
    6,
    "kol",
    (KolPage, KolCacheCleared),
    retention_ms=-1,
    doc="Every followings/lookup answer verbatim: the KOL cache (cleared by --clear-cache).",
)
KOL_COMMANDS = TopicSpec(
    "kol-commands",
    3,
    "task_id",
    (KolFollowingsTask,),
    compacted=True,
    doc="KOL followings tasks from the gateway, for the kol-worker (compacted: the gateway's "
    "KOL task view rebuilds from it; one record per task id).",
)
KOL_PROGRESS = TopicSpec(
    "kol-progress",
    3,
    "task_id",
    (KolTaskProgress,),
    compacted=True,
    doc="Latest progress per KOL followings task (compacted).",
)
KOL_TOPICS: tuple[TopicSpec, ...] = (KOL_PAGES, KOL_COMMANDS, KOL_PROGRESS)

# The web console (services/task_gateway/console_*.py). One partition each: small, and the
# audit and log views page by offset in one ordered log.
CONSOLE_USERS = TopicSpec(
    "console-users",
    1,
    "username",
    (ConsoleUser,),
    compacted=True,
    doc="Console users: role, argon2 hash, lockout, revoked sessions (compacted).",
)
CONSOLE_AUDIT = TopicSpec(
    "console-audit",
    1,
    "entry_id",
    (AuditEntry,),
    retention_ms=400 * 24 * 3600 * 1000,
    doc="Audit log of every state-changing API request, done or refused (kept 400 days).",
)
SERVICE_LOGS = TopicSpec(
    "service-logs",
    1,
    "process",
    (ServiceLog,),
    retention_ms=7 * 24 * 3600 * 1000,
    doc="WARNING+ log records of every service process, rate-bounded (kept 7 days).",
)
CONSOLE_TOPICS: tuple[TopicSpec, ...] = (CONSOLE_USERS, CONSOLE_AUDIT, SERVICE_LOGS)

CATALOGUE: tuple[TopicSpec, ...] = (
    TASK_COMMANDS,
    SEARCH_JOBS,
    RAW_PAGES,
    SCRAPE_CHECKPOINTS,
    POSTS,
    USERS,
    MEDIA_JOBS,
    MEDIA_STORED,
    TASK_PROGRESS,
    TASK_CONTROLS,
    SCHEDULE_STATE,
    REPORT_CONTROLS,
    ACCOUNT_COMMANDS,
    ACCOUNT_EVENTS,
    LEASE_REQUESTS,
    LEASE_GRANTS,
    ACCOUNT_STATE,
    PROXY_STATE,
    TASK_ACCOUNT_WAITS,
    DEAD_LETTERS,
    DEAD_LETTER_REDRIVES,
    *KOL_TOPICS,
    *CONSOLE_TOPICS,
)


def topic_name(spec: TopicSpec, prefix: str = "") -> str:
    return f"{prefix}{spec.name}"


def partition_count(spec: TopicSpec, settings: Settings | None = None) -> int:
    """The topic's partitions: the settings' count (XGET_TOPIC_PARTITIONS) or the catalogue's."""
    if settings is None:
        return spec.partitions
    return settings.partition_counts().get(spec.name, spec.partitions)


# --- the embedded broker's memory budget ------------------------------------------------------
# noida-db keeps every retained record batch in memory and snapshots all of it as JSON every
# few seconds, so its RSS follows what its topics hold. It enforces retention.bytes (per
# partition, as Kafka does) by deleting whole segments, oldest first, in a sweep every few
# seconds; a segment rolls at segment.bytes, 1 GiB by default, so without a small segment size
# retention.bytes deletes nothing. Measured on noida-db 0.2.3: RSS = ~10 MiB idle + ~5x the
# bytes retained (records + their JSON snapshot), plus what arrives between two sweeps.
BROKER_BASE_MB = 48  # idle broker, allocator slack and the compacted topics' current records
BROKER_RSS_PER_BYTE = 8  # retained bytes -> RSS: records, JSON snapshot, inflow between sweeps
SEGMENTS_PER_RETENTION = 4  # a partition holds retention.bytes + at most one segment more
# Compaction never touches the active segment: roll it every minute, so a compacted topic
# written on every X request (account-state, scrape-checkpoints) holds about its keys' latest
# records plus a minute of updates, not ten (a 1M-post run grew them by ~8 MiB each in 10 min).
COMPACTED_SEGMENT_MS = 60 * 1000
# Shares of the budget's retained bytes per delete-policy topic (compacted topics are bounded
# by their keys, not bytes; kol-pages is the never-pay-twice KOL cache, kept until cleared).
# Every delete-policy topic has one: service-logs is written all the time by every process and
# console-audit with every state-changing request, for months (production Kafka keeps them 7 and
# 400 days by time; the embedded broker keeps their newest records within the budget).
BUDGET_SHARES: dict[str, float] = {
    "raw-pages": 0.45,
    "posts": 0.28,
    "users": 0.05,
    "media-jobs": 0.04,
    "media-stored": 0.04,
    "dead-letters": 0.03,
    "account-events": 0.03,
    "service-logs": 0.03,
    "console-audit": 0.02,
    "report-controls": 0.01,
    "account-commands": 0.01,
    "account-lease-requests": 0.005,
    "account-lease-grants": 0.005,
}
MIN_SEGMENT_BYTES = 16 * 1024  # a segment holds at least one batch, whatever this says
BUDGET_KEYS = ("retention.bytes", "segment.bytes", "segment.ms")  # what budget_configs sets


# A consumer group's records are safe while it has at most the retention unread; the retention
# guard (infra/retention_guard.py) keeps every group within half of it, raising retention.bytes
# when one lags further. Producers wait for their consumers within an eighth, so that under the
# budget the guard does not have to (a raise holds more than the budget): the gate looks every
# 0.5 s and pages arrive meanwhile, and a parser starved of CPU lags on. At a quarter a 1M-post
# bench run (load ~10 on 2 cores) still had raw-pages raised to twice the budget's 8 times.
PRODUCER_LAG_SHARE = 0.125


def parser_lag_bytes(max_mb: int) -> int:
    """Bytes the parser may have unread on one raw-pages partition before the scraper waits
    (XGET_SCRAPER_MAX_PARSER_LAG_BYTES), under a budget of `max_mb` MiB."""
    return int(int(budget_configs(RAW_PAGES, max_mb)["retention.bytes"]) * PRODUCER_LAG_SHARE)


def retained_bytes_budget(max_mb: int) -> int:
    """Bytes all the budgeted topics may retain together for an RSS of `max_mb` MiB."""
    return max(0, (max_mb - BROKER_BASE_MB) * 1024 * 1024 // BROKER_RSS_PER_BYTE)


def budget_configs(spec: TopicSpec, max_mb: int) -> dict[str, str]:
    """The retention configs `spec` gets on the embedded broker with a budget of `max_mb` MiB:
    its share of the retained bytes split over its partitions as retention.bytes, segments a
    quarter of that (retention deletes whole segments), and for compacted topics a segment
    that rolls every minute so compaction can clean it. {} for a topic the budget leaves
    alone. Retention by time (retention.ms) still applies as the catalogue says."""
    if spec.compacted:
        return {"segment.ms": str(COMPACTED_SEGMENT_MS)}
    share = BUDGET_SHARES.get(spec.name)
    if share is None:
        return {}
    # A partition keeps retention.bytes and up to one segment more (the one being filled).
    kept_per_partition = int(retained_bytes_budget(max_mb) * share) // spec.partitions
    segment = max(MIN_SEGMENT_BYTES, kept_per_partition // (SEGMENTS_PER_RETENTION + 1))
    return {
        "retention.bytes": str(segment * SEGMENTS_PER_RETENTION),
        "segment.bytes": str(segment),
    }
