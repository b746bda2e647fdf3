"""Fixtures for the X simulator tests: a real `python -m infra.xsim` subprocess per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libs.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SEED = 7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sim_url(tmp_path_factory) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("xsim") / "xsim.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TWS_TELEMETRY": "0"}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.xsim",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--seed",
                str(SEED),
            ],
            cwd=REPO,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"xsim exited with {proc.returncode}: {log_path.read_text()}")
            try:
                if httpx.get(f"{url}/_sim/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"xsim not healthy within 30 s: {log_path.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def admin(sim_url) -> Iterator[httpx.Client]:
    """Sync client for /_sim; clears faults after each test."""
    with httpx.Client(base_url=sim_url, timeout=10) as c:
        yield c
        c.delete("/_sim/faults")
        c.delete("/_sim/media-faults")


@pytest.fixture
def settings(sim_url) -> Settings:
    return Settings(
        _env_file=None,
        x_graphql_url=f"{sim_url}/i/api/graphql",
        x_transaction_id="static",
        x_request_timeout_s=5.0,
    )
