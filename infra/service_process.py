"""Runs XGet services as OS processes, the way an operator does: `python -m services.cli run
SERVICE…` with the settings passed as XGET_* environment variables. Used by the end-to-end
tests and by the benchmarks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import SecretStr

from libs.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def settings_env(settings: Settings) -> dict[str, str]:
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"XGET_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


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


def all_alive(processes: list[ServiceProcess]) -> bool:
    """True, or RuntimeError naming the first process that exited, with its log tail."""
    for p in processes:
        if not p.alive():
            raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
    return True


def gateway_client(settings: Settings) -> "httpx.Client":
    """An HTTP client for the task gateway of `settings`, with its bearer token."""
    import httpx

    return httpx.Client(base_url=f"http://{settings.gateway_host}:{settings.gateway_port}",
                        timeout=10, headers={
                            "Authorization": f"Bearer {settings.api_token.get_secret_value()}"})
