"""scraper: pages X for each search job's slice and publishes every page as it came."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import (
    ACCOUNT_EVENTS,
    LEASE_GRANTS,
    LEASE_REQUESTS,
    RAW_PAGES,
    SCRAPE_CHECKPOINTS,
    SEARCH_JOBS,
    TASK_CONTROLS,
    TASK_PROGRESS,
)

JOBS = ConsumerGroup("scraper", (SEARCH_JOBS,))

DECLARATION = ServiceDeclaration(
    "scraper",
    (JOBS,),
    # SEARCH_JOBS: a dense slice is cut into children, published as jobs of their own.
    outputs=(RAW_PAGES, SCRAPE_CHECKPOINTS, SEARCH_JOBS, LEASE_REQUESTS, ACCOUNT_EVENTS),
    reads=(TASK_PROGRESS, TASK_CONTROLS, SCRAPE_CHECKPOINTS, LEASE_GRANTS),
    doc=__doc__ or "",
)
