"""XGet as operators run it, on local parts, for drills and the soak benchmark.

Every service is its own OS process (`xget run NAME`); ClickHouse is reached over HTTP
(infra/chdb_http, the real engine on a data directory of the stack's own, so it can be killed
and started again on the same data); the S3 server is reached through a TCP relay, so it can be
taken off the network and brought back without losing what it holds. The broker and the X
simulator are the caller's.
"""

from __future__ import annotations

import signal
from pathlib import Path

from infra import local
from infra.service_process import ServiceProcess, gateway_client, wait_until
from infra.tcp_relay import TcpRelay
from libs.settings import Settings

SERVICES = (
    "task-gateway",
    "scraper",
    "parser",
    "dedup-counter",
    "media-downloader",
    "reporter",
    "account-manager",
)


class SeparateStack:
    def __init__(
        self,
        settings: Settings,
        work: Path,
        s3_endpoint: str,
        services: tuple[str, ...] = SERVICES,
        *,
        supervised: bool = True,
    ):
        """`settings`: everything but ClickHouse and the S3 endpoint, which the stack sets.
        `supervised`: each process runs under infra/supervise.py, as `make up` runs them: one
        that dies comes back by itself (`restarts()` counts it)."""
        self.work = work
        self.ch_data, self.ch_port = work / "clickhouse", local.free_port()
        self.dsn = f"http://default:@127.0.0.1:{self.ch_port}/default"
        host, port = s3_endpoint.rsplit(":", 1)
        self.s3_relay = TcpRelay(host, int(port))
        self.settings = settings.model_copy(
            update={"clickhouse_dsn": self.dsn, "s3_endpoint": self.s3_relay.address}
        )
        self.clickhouse: local.ProcessHandle | None = None
        self.procs = {
            s: ServiceProcess(s, [s], self.settings, work, supervised=supervised) for s in services
        }

    # --- the whole stack ------------------------------------------------------------------------
    def start(self, ready_timeout: float = 90) -> SeparateStack:
        self.clickhouse_up()
        self.s3_relay.__enter__()
        for p in self.procs.values():
            p.start()
        if {"task-gateway", "all"} & set(self.procs):
            client = gateway_client(self.settings)
            wait_until(
                lambda: client.get("/health").status_code == 200,
                ready_timeout,
                "the gateway to answer",
            )
        return self

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()
        self.s3_relay.__exit__()
        if self.clickhouse is not None:
            self.clickhouse.stop()
            self.clickhouse = None

    def dead(self) -> list[str]:
        return [name for name, p in self.procs.items() if not p.alive()]

    def restarts(self) -> dict[str, int]:
        """Service -> times its supervisor had to start it again (only those it had to)."""
        return {name: n for name, p in self.procs.items() if (n := p.restarts())}

    def tails(self, n: int = 30) -> str:
        return "\n".join(f"--- {name}\n{p.tail(n)}" for name, p in self.procs.items())

    # --- faults -----------------------------------------------------------------------------------
    def kill(self, service: str) -> None:
        """SIGKILL one service's process (a crash, an OOM kill); supervised, it comes back by
        itself, else `restart` starts it (what k8s would)."""
        self.procs[service].kill()

    def restart(self, service: str) -> None:
        if not self.procs[service].supervised:
            self.procs[service].start()

    def clickhouse_down(self) -> None:
        """SIGKILL the ClickHouse server: connections refused until it is started again."""
        assert self.clickhouse is not None
        self.clickhouse.proc.send_signal(signal.SIGKILL)
        self.clickhouse.proc.wait(10)
        self.clickhouse = None

    def clickhouse_up(self) -> None:
        """Start ClickHouse on the stack's data and port (again)."""
        if self.clickhouse is None:
            self.clickhouse = local.start_chdb_http(self.ch_data, self.ch_port, log_dir=self.work)

    def s3_down(self) -> None:
        self.s3_relay.down()

    def s3_up(self) -> None:
        self.s3_relay.up()
