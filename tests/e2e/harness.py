"""Runs XGet services as real OS processes against real local infrastructure, for e2e tests.

Each service group is a `python -m services.cli run …` subprocess with its settings passed as
XGET_* environment variables, exactly as an operator would run it. Tests talk to the gateway
over HTTP and to the simulator's admin API, and read ClickHouse only after the process that
owns the chdb path has stopped (chdb allows one process per data path).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx
from pydantic import SecretStr

from infra import local
from libs.settings import Settings
from libs.topics import CATALOGUE

REPO = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"XGET_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def fresh_prefix(bootstrap: str) -> str:
    """A topic namespace of its own for one test, with the whole catalogue created."""
    prefix = f"e{uuid.uuid4().hex[:8]}-"
    local.create_topics_sync(bootstrap, prefix, CATALOGUE)
    return prefix


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25):
    """Poll `predicate` until it returns a truthy value; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


class ServiceProcess:
    def __init__(self, name: str, services: list[str], settings: Settings, log_dir: Path):
        self.name = name
        self.services = services
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": str(REPO)}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", *self.services],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to commit, flush or leave the group."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM and wait; True when the process exited by itself in time."""
        if not self.alive():
            return True
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            print(f"{self.name} ignored SIGTERM for {timeout}s:\n{self.tail()}")
            return False

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Gateway:
    def __init__(self, settings: Settings):
        self.base = f"http://{settings.gateway_host}:{settings.gateway_port}"
        self.client = httpx.Client(base_url=self.base, timeout=10, headers={
            "Authorization": f"Bearer {settings.api_token.get_secret_value()}"})

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
        return [e for e in self.log()
                if e.get("operation") == "SearchTimeline" and keyword in (e.get("raw_query") or "")]
