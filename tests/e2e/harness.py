"""E2E helpers around real local infrastructure. Services run as OS processes through
`infra.service_process` (as an operator runs them). Tests talk to the gateway
over HTTP and to the simulator's admin API, and read ClickHouse only after the process that
owns the chdb path has stopped (chdb allows one process per data path).
"""

from __future__ import annotations

import uuid

import httpx

from infra import local
from libs.settings import Settings
from libs.topics import CATALOGUE


def fresh_prefix(bootstrap: str) -> str:
    """A topic namespace of its own for one test, with the whole catalogue created."""
    prefix = f"e{uuid.uuid4().hex[:8]}-"
    local.create_topics_sync(bootstrap, prefix, CATALOGUE)
    return prefix


class Gateway:
    def __init__(self, settings: Settings):
        self.base = f"http://{settings.gateway_host}:{settings.gateway_port}"
        self.client = httpx.Client(
            base_url=self.base,
            timeout=10,
            headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
        )

    def ready(self) -> bool:
        return self.client.get("/health").status_code == 200

    def submit(self, **body) -> httpx.Response:
        return self.client.post("/api/v1/tasks/ondemand", json=body)

    def status(self, task_id: str) -> dict:
        r = self.client.get(f"/api/v1/tasks/{task_id}/status")
        r.raise_for_status()
        return r.json()


class Simulator:
    def __init__(self, base_url: str):
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def configure(self, **patch) -> None:
        self.client.post("/_sim/config", json=patch).raise_for_status()

    def corpus_ids(self, query: str) -> list[str]:
        r = self.client.get("/_sim/corpus", params={"query": query})
        r.raise_for_status()
        return r.json()["ids"]

    def log(self) -> list[dict]:
        r = self.client.get("/_sim/log")
        r.raise_for_status()
        return r.json()

    def search_requests(self, keyword: str) -> list[dict]:
        return [
            e
            for e in self.log()
            if e.get("operation") == "SearchTimeline" and keyword in (e.get("raw_query") or "")
        ]
