"""How each deployable service runs and scales, for operations: its lag thresholds, replica
bounds and resources. What a service is (its consumer groups, their input topics, its outputs
and its HTTP port) is its own declaration (`services/<pkg>/declaration.py`), read here and not
repeated. The k8s manifests (`infra/k8s_manifests.py`) are generated from this table and the
topic catalogue; tests check the compose stack and the alert rules against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.declaration import ConsumerGroup, ServiceDeclaration
from services import declarations as d

METRICS_PORT = 9100  # Settings.metrics_port's default; the pods' /metrics, /livez, /readyz


@dataclass(frozen=True)
class Workload:
    """How a declared service is run and scaled; what it is comes from its declaration."""

    declaration: ServiceDeclaration
    lag_threshold: int  # records of lag one replica is expected to absorb (KEDA lagThreshold)
    activation_lag: int = 0  # scale from the minimum only above this lag
    min_replicas: int = 1
    fixed_replicas: int | None = None  # not scaled on lag (see account-manager)
    compose_replicas: int = 1
    cpu: str = "250m"
    memory: str = "512Mi"
    needs_browser: bool = False  # password logins (Playwright + Chromium): the browser image

    @property
    def name(self) -> str:  # `xget run NAME`
        return self.declaration.name

    @property
    def groups(self) -> tuple[ConsumerGroup, ...]:
        return self.declaration.groups

    @property
    def http_port(self) -> int | None:  # the service's own HTTP API
        return self.declaration.http_port

    @property
    def max_replicas(self) -> int:
        if self.fixed_replicas is not None:
            return self.fixed_replicas
        return max(g.max_members for g in self.groups)


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        d.TASK_GATEWAY,
        lag_threshold=50,
        min_replicas=2,
        compose_replicas=1,
    ),
    Workload(
        d.SCRAPER,
        # a slice pages X for minutes; one replica runs scraper_concurrency (8) at once
        lag_threshold=8,
        activation_lag=1,
        compose_replicas=2,
    ),
    Workload(
        d.PARSER,
        lag_threshold=500,
        activation_lag=10,
        compose_replicas=2,
    ),
    Workload(
        d.DEDUP_COUNTER,
        lag_threshold=10_000,
        activation_lag=100,
        compose_replicas=1,
        memory="1Gi",
    ),
    Workload(
        d.MEDIA_DOWNLOADER,
        lag_threshold=200,
        activation_lag=1,
        compose_replicas=2,
        memory="1Gi",
    ),
    Workload(
        d.REPORTER,
        lag_threshold=1_000,
        activation_lag=1,
        compose_replicas=1,
    ),
    Workload(
        d.KOL_WORKER,
        lag_threshold=1,
        activation_lag=0,
        compose_replicas=1,
    ),
    # The account pool's inputs have one partition each: one active member owns them all and
    # a second replica is a hot standby. Lag cannot be drained by more replicas, so no
    # autoscaling; alert on its lag instead.
    Workload(
        d.ACCOUNT_MANAGER,
        lag_threshold=0,
        fixed_replicas=2,
        compose_replicas=2,
        needs_browser=True,
    ),
)


def by_name() -> dict[str, Workload]:
    return {w.name: w for w in WORKLOADS}


def consumer_groups() -> dict[str, ConsumerGroup]:
    """Every consumer group a service joins, by name (without prefix)."""
    return d.consumer_groups()
