"""What each deployable service is, for operations: its consumer groups and their input topics,
its ports, and how it scales. The k8s manifests (`infra/k8s_manifests.py`) are generated from
this table and the topic catalogue; tests check the compose stack and the alert rules against it.

Group ids are `{topic_prefix}{name}` where `name` is the `service` a ConsumerLoop (or a
service's own consumer) is built with: the names are imported from the services themselves so
a rename cannot leave the scaling rules pointing at a group nobody joins.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.topics import (
    ACCOUNT_COMMANDS,
    ACCOUNT_EVENTS,
    DEAD_LETTERS,
    KOL_COMMANDS,
    LEASE_REQUESTS,
    MEDIA_JOBS,
    MEDIA_STORED,
    POSTS,
    RAW_PAGES,
    REPORT_CONTROLS,
    SEARCH_JOBS,
    TASK_COMMANDS,
    TASK_PROGRESS,
    USERS,
    TopicSpec,
)
from services.account_manager.service import SERVICE as ACCOUNT_MANAGER
from services.dedup_counter.handler import SERVICE as DEDUP_COUNTER
from services.dedup_counter.usage import SERVICE as USAGE_METER
from services.kol.worker import SERVICE as KOL_WORKER
from services.media_downloader.handler import SERVICE as MEDIA_DOWNLOADER
from services.parser.handler import SERVICE as PARSER
from services.reporter.media_sink import SERVICE as REPORTER_MEDIA
from services.reporter.service import SERVICE as REPORTER
from services.scraper.service import SERVICE as SCRAPER
from services.task_gateway.rejections import SERVICE as REJECTIONS
from services.task_gateway.scheduler import SERVICE as SCHEDULER

METRICS_PORT = 9100  # Settings.metrics_port's default; the pods' /metrics, /livez, /readyz


@dataclass(frozen=True)
class ConsumerGroup:
    name: str  # group id without the topic prefix
    inputs: tuple[TopicSpec, ...]

    def group_id(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    @property
    def max_members(self) -> int:
        """Members beyond the largest input's partition count get no partition at all."""
        return max(s.partitions for s in self.inputs)


@dataclass(frozen=True)
class Workload:
    name: str  # `xget run NAME`
    groups: tuple[ConsumerGroup, ...]
    lag_threshold: int  # records of lag one replica is expected to absorb (KEDA lagThreshold)
    activation_lag: int = 0  # scale from the minimum only above this lag
    http_port: int | None = None  # the service's own HTTP API
    min_replicas: int = 1
    fixed_replicas: int | None = None  # not scaled on lag (see account-manager)
    compose_replicas: int = 1
    cpu: str = "250m"
    memory: str = "512Mi"

    @property
    def max_replicas(self) -> int:
        if self.fixed_replicas is not None:
            return self.fixed_replicas
        return max(g.max_members for g in self.groups)


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "task-gateway",
        (ConsumerGroup(SCHEDULER, (TASK_COMMANDS,)), ConsumerGroup(REJECTIONS, (DEAD_LETTERS,))),
        lag_threshold=50,
        http_port=8080,
        min_replicas=2,
        compose_replicas=1,
    ),
    Workload(
        "scraper",
        (ConsumerGroup(SCRAPER, (SEARCH_JOBS,)),),
        # a slice pages X for minutes; one replica runs scraper_concurrency (8) at once
        lag_threshold=8,
        activation_lag=1,
        compose_replicas=2,
    ),
    Workload(
        "parser",
        (ConsumerGroup(PARSER, (RAW_PAGES,)),),
        lag_threshold=500,
        activation_lag=10,
        compose_replicas=2,
    ),
    Workload(
        "dedup-counter",
        (
            ConsumerGroup(DEDUP_COUNTER, (POSTS, USERS)),
            ConsumerGroup(USAGE_METER, (ACCOUNT_EVENTS,)),
        ),
        lag_threshold=10_000,
        activation_lag=100,
        compose_replicas=1,
        memory="1Gi",
    ),
    Workload(
        "media-downloader",
        (ConsumerGroup(MEDIA_DOWNLOADER, (MEDIA_JOBS,)),),
        lag_threshold=200,
        activation_lag=1,
        compose_replicas=2,
        memory="1Gi",
    ),
    Workload(
        "reporter",
        (
            ConsumerGroup(REPORTER, (TASK_COMMANDS, TASK_PROGRESS, REPORT_CONTROLS)),
            ConsumerGroup(REPORTER_MEDIA, (MEDIA_STORED,)),
        ),
        lag_threshold=1_000,
        activation_lag=1,
        compose_replicas=1,
    ),
    Workload(
        "kol-worker",
        (ConsumerGroup(KOL_WORKER, (KOL_COMMANDS,)),),
        lag_threshold=1,
        activation_lag=0,
        compose_replicas=1,
    ),
    # The account pool's inputs have one partition each: one active member owns them all and
    # a second replica is a hot standby. Lag cannot be drained by more replicas, so no
    # autoscaling; alert on its lag instead.
    Workload(
        "account-manager",
        (ConsumerGroup(ACCOUNT_MANAGER, (ACCOUNT_COMMANDS, ACCOUNT_EVENTS, LEASE_REQUESTS)),),
        lag_threshold=0,
        http_port=8081,
        fixed_replicas=2,
        compose_replicas=2,
    ),
)


def by_name() -> dict[str, Workload]:
    return {w.name: w for w in WORKLOADS}


def consumer_groups() -> dict[str, ConsumerGroup]:
    """Every consumer group a service joins, by name (without prefix)."""
    return {g.name: g for w in WORKLOADS for g in w.groups}
