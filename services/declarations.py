"""Every deployable service's declaration, in one place for the tools that need them all
(`xget lag`, infra/workloads.py, the declaration tests)."""

from __future__ import annotations

from libs.declaration import ConsumerGroup, ServiceDeclaration
from services.account_manager.declaration import DECLARATION as ACCOUNT_MANAGER
from services.dedup_counter.declaration import DECLARATION as DEDUP_COUNTER
from services.kol.declaration import DECLARATION as KOL_WORKER
from services.media_downloader.declaration import DECLARATION as MEDIA_DOWNLOADER
from services.parser.declaration import DECLARATION as PARSER
from services.reporter.declaration import DECLARATION as REPORTER
from services.scraper.declaration import DECLARATION as SCRAPER
from services.task_gateway.declaration import DECLARATION as TASK_GATEWAY

ALL: tuple[ServiceDeclaration, ...] = (
    TASK_GATEWAY,
    SCRAPER,
    PARSER,
    DEDUP_COUNTER,
    MEDIA_DOWNLOADER,
    REPORTER,
    KOL_WORKER,
    ACCOUNT_MANAGER,
)


def by_name() -> dict[str, ServiceDeclaration]:
    return {d.name: d for d in ALL}


def consumer_groups() -> dict[str, ConsumerGroup]:
    """Every consumer group a service joins, by name (without the topic prefix)."""
    return {g.name: g for d in ALL for g in d.groups}
