"""Runs XGet services as OS processes, the way an operator does: `python -m services.cli run
SERVICE…` with the settings passed as XGET_* environment variables. Used by the end-to-end
tests and by the benchmarks.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr

from libs.settings import Settings

if TYPE_CHECKING:
    import httpx

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
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
    )


async def wait_until_async(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """`wait_until` for a test that runs services in its own event loop: the loop keeps
    running between checks, and `predicate` may return an awaitable (it is awaited)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class ServiceProcess:
    """`xget run SERVICES…` as an OS process. `supervised=True` runs it under infra.supervise
    as `make up` does: a service process that dies is started again by itself (with backoff);
    `kill()` then SIGKILLs the service alone, the crash the supervisor must repair, and
    `restarts()` says how often it had to."""

    # Short delays: the tests wait for the comeback.
    SUPERVISOR_OPTS: ClassVar[dict[str, float]] = {
        "backoff": 0.5,
        "backoff_max": 5.0,
        "healthy": 30.0,
    }

    def __init__(
        self,
        name: str,
        services: list[str],
        settings: Settings,
        log_dir: Path,
        *,
        supervised: bool = False,
    ):
        self.name = name
        self.services = services
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.state_path = log_dir / f"{name}.supervisor.json"
        self.supervised = supervised
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "services.cli", "run", *self.services]
        if self.supervised:
            from infra.supervise import supervised_argv

            self.state_path.unlink(missing_ok=True)
            argv = supervised_argv(argv, self.state_path, **self.SUPERVISOR_OPTS)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    def alive(self) -> bool:
        """The process (in supervised mode: its supervisor) runs."""
        return self.proc is not None and self.proc.poll() is None

    def _state(self) -> dict:
        from infra.supervise import read_state

        return read_state(self.state_path) or {}

    @property
    def pid(self) -> int:
        """The started process's pid (the supervisor's, in supervised mode)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc.pid

    def child_pid(self) -> int | None:
        """The service's own pid (supervised mode; else the process's pid)."""
        if not self.supervised:
            return self.proc.pid if self.proc is not None else None
        return self._state().get("child_pid")

    def restarts(self) -> int:
        """How many times the supervisor started the service again (0 unsupervised)."""
        return int(self._state().get("restarts") or 0) if self.supervised else 0

    def kill(self) -> None:
        """SIGKILL: no chance to commit, flush or leave the group. Supervised: the service
        process alone (a crash), which its supervisor then starts again."""
        assert self.proc is not None
        if self.supervised:
            from infra.local import pid_alive

            pid = wait_until(self.child_pid, 30, f"{self.name}'s service pid")
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 10, f"{self.name} pid {pid} to die")
            return
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
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: a supervised child too
            self.proc.wait(10)
            print(f"{self.name} ignored SIGTERM for {timeout}s:\n{self.tail()}")
            return False

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def all_alive(processes: list[ServiceProcess]) -> bool:
    """True, or RuntimeError naming the first process that exited (in supervised mode: that
    its supervisor had to restart), with its log tail."""
    for p in processes:
        if not p.alive() or p.restarts():
            raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
    return True


def gateway_client(settings: Settings) -> httpx.Client:
    """An HTTP client for the task gateway of `settings`, with its bearer token."""
    import httpx

    return httpx.Client(
        base_url=f"http://{settings.gateway_host}:{settings.gateway_port}",
        timeout=10,
        headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
    )
