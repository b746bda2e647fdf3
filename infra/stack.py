"""The embedded default stack: ``python -m infra.stack up|down|status``.

``up`` (idempotent — parts already running are left alone):
  1. noida-db (Kafka wire) with its data in ``DATA/kafka`` on port 9092 (``XGET_KAFKA_PORT``),
  2. the topic catalogue (``XGET_TOPIC_PREFIX``), partition counts verified, with retention
     from the broker's memory budget, and the retention guard (``infra/retention_guard.py``),
  3. ClickHouse migrations on ``XGET_CLICKHOUSE_DSN`` (run as a short subprocess, so this
     process never holds the chdb path that the services process will own),
  4. the X simulator on port 8090 (``XGET_XSIM_PORT``) when ``infra/xsim`` is runnable,
  5. the services (``python -m services.cli run all``) when ``services/cli.py`` exists; ready
     when the task gateway accepts connections on ``gateway_host:gateway_port``.
``--no-xsim`` / ``--no-services`` leave those parts out (infra only).

DATA is ``settings.data_dir`` (default ``.xget``). Pid files go to ``DATA/run/*.pid``, logs to
``DATA/logs/*.log``. Processes are detached (own session), so ``make up`` returns.

When the simulator is started and the X settings are still their defaults, the services get
``XGET_X_GRAPHQL_URL``/``XGET_X_MEDIA_BASE``/``XGET_KOL_API_BASE_URL``/``XGET_X_LOGIN_URL``/
``XGET_PROXY_CHECK_URL`` pointing at it, ``XGET_X_TRANSACTION_ID=static`` (no internet here)
and two simulator accounts. Services refuse to start without an API token, webhook secret and
account key (libs/fail_closed.py): each of ``XGET_API_TOKEN``, ``XGET_WEBHOOK_SECRET`` and
``XGET_ACCOUNT_KEY`` that is unset is generated once into ``DATA/api.token``,
``DATA/webhook.secret`` and ``DATA/account.key`` (mode 600), and ``up`` prints where. A
non-default ``XGET_KAFKA_PORT`` is passed on as ``XGET_KAFKA_BOOTSTRAP``.

Each part runs under its own supervisor (``infra/supervise.py``): a part that dies is started
again with backoff (1 s doubling to 30 s, reset after 60 s up); ``DATA/run/NAME.supervisor.json``
counts the restarts.

``down`` stops them in reverse order (SIGTERM to each process group — supervisor and part
together, so nothing is restarted — wait, SIGKILL). The broker is waited for as long as it
saves (SIGKILL only after 15 s without CPU); ``up`` waits for it as long as it loads.

On the embedded broker, each topic's retention.bytes and segment size are derived from
``XGET_EMBEDDED_BROKER_MAX_MB`` (libs.topics.budget_configs), which ``up`` prints.
``status`` prints each part with its pid and alive/dead.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path

from infra import local
from infra.supervise import read_state
from libs.settings import Settings
from libs.topics import parser_lag_bytes, retained_bytes_budget

REPO_ROOT = local.REPO_ROOT
# name -> a substring of its command line (guards against a recycled pid).
PARTS = {
    "noida": "noida-db",
    "guard": "infra.retention_guard",
    "xsim": "infra.xsim",
    "services": "services.cli",
}
ORDER = ["noida", "guard", "xsim", "services"]


def _paths(settings: Settings) -> tuple[Path, Path, Path]:
    data = Path(settings.data_dir).resolve()
    return data, data / "run", data / "logs"


def _read_pid(run: Path, name: str) -> int | None:
    try:
        return int((run / f"{name}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None, name: str) -> bool:
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return PARTS[name] in cmdline and local.pid_alive(pid)


def _supervisor_state(run: Path, name: str) -> Path:
    """Where a part's supervisor (infra.supervise) keeps its child's pid and restart count."""
    run.mkdir(parents=True, exist_ok=True)
    return run / f"{name}.supervisor.json"


def _write_pid(run: Path, name: str, pid: int) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / f"{name}.pid").write_text(f"{pid}\n")


def _child_env(settings: Settings, kafka_port: int, xsim_url: str | None) -> dict[str, str]:
    env: dict[str, str] = {
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
    }
    defaults = Settings.model_fields
    if settings.kafka_bootstrap == defaults["kafka_bootstrap"].default:
        env["XGET_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{kafka_port}"
    if xsim_url:
        if settings.x_graphql_url == defaults["x_graphql_url"].default:
            env["XGET_X_GRAPHQL_URL"] = f"{xsim_url}/i/api/graphql"
        if not settings.x_media_base:
            env["XGET_X_MEDIA_BASE"] = xsim_url
        if not settings.x_video_base:
            env["XGET_X_VIDEO_BASE"] = xsim_url
        if settings.x_transaction_id == defaults["x_transaction_id"].default:
            env["XGET_X_TRANSACTION_ID"] = "static"
        if settings.kol_api_base_url == defaults["kol_api_base_url"].default:
            env["XGET_KOL_API_BASE_URL"] = xsim_url  # its twitterapi.io-style routes
            if not settings.kol_api_key.get_secret_value():
                env["XGET_KOL_API_KEY"] = "sim-key"
        if not settings.x_accounts.get_secret_value():
            # Simulator accounts: the simulator accepts any cookies and rate-limits per account.
            # The account-manager adds them to its pool when it starts.
            env["XGET_X_ACCOUNTS"] = "sim1:sim-token-1:sim-ct0-1,sim2:sim-token-2:sim-ct0-2"
        if settings.x_login_url == defaults["x_login_url"].default:
            env["XGET_X_LOGIN_URL"] = f"{xsim_url}/i/flow/login"
        if settings.proxy_check_url == defaults["proxy_check_url"].default:
            env["XGET_PROXY_CHECK_URL"] = f"{xsim_url}/_sim/health"
    env.update(_local_secrets(settings))
    # The embedded broker holds in memory every page the parser has not read: the scraper
    # waits for the parser beyond 500 pages (~10k posts), and beyond an eighth of what a
    # raw-pages partition keeps under the memory budget (so the retention guard never has to
    # raise it past the budget).
    embedded = settings.kafka_bootstrap == defaults["kafka_bootstrap"].default
    lag_default = defaults["scraper_max_parser_lag_pages"].default
    if embedded and settings.scraper_max_parser_lag_pages == lag_default:
        env["XGET_SCRAPER_MAX_PARSER_LAG_PAGES"] = "500"
    lag_bytes_default = defaults["scraper_max_parser_lag_bytes"].default
    if embedded and settings.scraper_max_parser_lag_bytes == lag_bytes_default:
        env["XGET_SCRAPER_MAX_PARSER_LAG_BYTES"] = str(
            parser_lag_bytes(settings.embedded_broker_max_mb)
        )
    # The embedded broker is noida-db, which never expires a killed group member.
    if settings.kafka_group_mode == defaults["kafka_group_mode"].default:
        env["XGET_KAFKA_GROUP_MODE"] = "assign"
    # ... and answers empty fetches at once, which would make idle consumers spin.
    if settings.kafka_empty_fetch_backoff_ms == defaults["kafka_empty_fetch_backoff_ms"].default:
        env["XGET_KAFKA_EMPTY_FETCH_BACKOFF_MS"] = "50"
    return env


# Secrets the services refuse to start without (libs/fail_closed.py): setting -> file in DATA.
LOCAL_SECRET_FILES = {
    "api_token": "api.token",
    "webhook_secret": "webhook.secret",
    "account_key": "account.key",
}


def _local_secrets(settings: Settings) -> dict[str, str]:
    """Local only: each secret that is unset (or a well-known default) is generated once into
    DATA/<file> (mode 600) and passed to the services. Production sets them from its secret
    store."""
    from libs.fail_closed import weak
    from libs.secretbox import SecretBox

    env = {}
    for name, filename in LOCAL_SECRET_FILES.items():
        if not weak(getattr(settings, name).get_secret_value()):
            continue
        path = Path(settings.data_dir).resolve() / filename
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(SecretBox.new_key() if name == "account_key" else secrets.token_urlsafe(32))
        env[f"XGET_{name.upper()}"] = path.read_text().strip()
    return env


def _print_local_secrets(settings: Settings) -> None:
    """Where the generated secrets are (never the values): the client needs the API token."""
    from libs.fail_closed import weak

    for name, filename in LOCAL_SECRET_FILES.items():
        path = Path(settings.data_dir).resolve() / filename
        if weak(getattr(settings, name).get_secret_value()) and path.exists():
            print(f"secret    XGET_{name.upper()} generated into {path} (mode 600)")


def _first_admin(settings: Settings, bootstrap: str) -> None:
    """A fresh system gets console user `admin` with a generated password, printed here once
    (it is stored only as its hash); later `up`s find a user and print nothing."""
    import asyncio

    from services.task_gateway.users_cli import FIRST_ADMIN, ensure_first_admin

    password = asyncio.run(
        ensure_first_admin(settings.model_copy(update={"kafka_bootstrap": bootstrap}))
    )
    if password is not None:
        print(
            f"console   first admin created: user {FIRST_ADMIN!r} password {password!r} "
            "(shown only now; add users with `xget users add`)"
        )


def up(settings: Settings, *, xsim: bool = True, services: bool = True) -> int:
    data, run, logs = _paths(settings)
    logs.mkdir(parents=True, exist_ok=True)
    kafka_port = int(os.environ.get("XGET_KAFKA_PORT", "9092"))
    xsim_port = int(os.environ.get("XGET_XSIM_PORT", "8090"))

    # 1. Kafka
    pid = _read_pid(run, "noida")
    if _alive(pid, "noida"):
        print(f"noida     already running (pid {pid})")
    else:
        snapshot = data / "kafka" / "kafka.json"
        if snapshot.exists():  # it answers once all of it is loaded: ~20 s per GB
            size_mb = snapshot.stat().st_size / 2**20
            print(f"noida     loading its {size_mb:.0f} MiB snapshot…", flush=True)
        h = local.start_noida(
            data / "kafka", kafka_port, log_dir=logs, supervise=_supervisor_state(run, "noida")
        )
        _write_pid(run, "noida", h.pid)
        print(f"noida     started  pid {h.pid}  kafka {h.address}")
    bootstrap = f"127.0.0.1:{kafka_port}"
    embedded = settings.kafka_bootstrap == Settings.model_fields["kafka_bootstrap"].default
    if not embedded:
        bootstrap = settings.kafka_bootstrap

    # 2. topics (on the embedded broker, retention within its memory budget)
    budget = settings.embedded_broker_max_mb if embedded else None
    counts = local.create_topics_sync(
        bootstrap,
        settings.topic_prefix,
        broker_max_mb=budget,
        partitions=settings.partition_counts(),
    )
    print(f"topics    {len(counts)} ready ({', '.join(f'{t}:{n}' for t, n in counts.items())})")
    if budget is not None:
        print(
            f"noida     memory budget {budget} MiB (XGET_EMBEDDED_BROKER_MAX_MB): topics keep "
            f"{retained_bytes_budget(budget) / 2**20:.0f} MiB of records; older ones are "
            "deleted (raw pages stay in the object store's raw_data/ archive)"
        )
        # The retention guard: byte retention never deletes what a consumer has not read.
        pid = _read_pid(run, "guard")
        if _alive(pid, "guard"):
            print(f"guard     already running (pid {pid})")
        else:
            h = local.start_process(
                "retention-guard",
                [sys.executable, "-m", "infra.retention_guard", "--budget-mb", str(budget)],
                lambda: True,
                log_dir=logs,
                env=_child_env(settings, kafka_port, None),
                cwd=os.getcwd(),
                supervise=_supervisor_state(run, "guard"),
            )
            _write_pid(run, "guard", h.pid)
            print(
                f"guard     started  pid {h.pid}  (raises a topic's retention while a group lags)"
            )

    # 2b. the console's first admin, on a system without console users (printed once)
    _first_admin(settings, bootstrap)

    # 3. migrations (a subprocess: the chdb path must be free for the services process)
    with open(logs / "migrate.log", "ab") as out:
        rc = subprocess.call(
            [sys.executable, "-m", "libs.storage.migrate", "--dsn", settings.clickhouse_dsn],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=os.getcwd(),
            env={**os.environ, **_child_env(settings, kafka_port, None)},
        )
    tail = local.tail(logs / "migrate.log", 3)
    if rc != 0:
        print(f"migrations FAILED (see {logs / 'migrate.log'}):\n{tail}", file=sys.stderr)
        return 1
    print(f"migrations {tail.splitlines()[-1] if tail else 'ok'}")

    # 4. simulator
    xsim_url: str | None = f"http://127.0.0.1:{xsim_port}"
    pid = _read_pid(run, "xsim")
    if _alive(pid, "xsim"):
        print(f"xsim      already running (pid {pid})")
    elif xsim and local.xsim_available():
        h = local.start_xsim(xsim_port, log_dir=logs, supervise=_supervisor_state(run, "xsim"))
        _write_pid(run, "xsim", h.pid)
        print(f"xsim      started  pid {h.pid}  {h.address}")
    else:
        xsim_url = None
        print("xsim      skipped" + ("" if xsim else " (--no-xsim)"))

    # 5. services
    pid = _read_pid(run, "services")
    if _alive(pid, "services"):
        print(f"services  already running (pid {pid})")
    elif services and (REPO_ROOT / "services" / "cli.py").is_file():
        host, port = settings.gateway_host, settings.gateway_port
        h = local.start_process(
            "services",
            [sys.executable, "-m", "services.cli", "run", "all"],
            lambda: local.tcp_ready(host, port),
            address=f"http://{host}:{port}",
            port=port,
            log_dir=logs,
            env=_child_env(settings, kafka_port, xsim_url),
            cwd=os.getcwd(),
            timeout=60,
            supervise=_supervisor_state(run, "services"),
        )
        _write_pid(run, "services", h.pid)
        print(f"services  started  pid {h.pid}  gateway {h.address}")
        print(f"console   {h.address}/console/ (sign in as a console user; API docs: /docs)")
    else:
        print("services  skipped" + ("" if services else " (--no-services)"))
    _print_local_secrets(settings)
    print(f"logs in {logs}")
    print("the CLI: .venv/bin/xget --help   (or `source .venv/bin/activate`, then xget)")
    print("stop with: make down")
    return 0


def down(settings: Settings) -> int:
    _, run, _ = _paths(settings)
    for name in reversed(ORDER):
        pid = _read_pid(run, name)
        if pid is not None and _alive(pid, name):
            # The broker saves all it holds on SIGTERM (25 s at 1M posts): never cut short.
            local.stop_pid(pid, group=True, timeout=15, patient=name == "noida")
            print(f"{name:<9} stopped (pid {pid})")
        elif pid:
            print(f"{name:<9} was not running (stale pid {pid})")
        (run / f"{name}.pid").unlink(missing_ok=True)
        _supervisor_state(run, name).unlink(missing_ok=True)
    return 0


def status(settings: Settings) -> int:
    _, run, logs = _paths(settings)
    all_alive = True
    for name in ORDER:
        pid = _read_pid(run, name)
        if pid is None:
            print(f"{name:<9} not started")
            continue
        alive = _alive(pid, name)
        all_alive &= alive
        restarts = (read_state(_supervisor_state(run, name)) or {}).get("restarts") or 0
        print(
            f"{name:<9} pid {pid:<8} {'alive' if alive else 'dead'}"
            + (f"  (restarted {restarts}x by its supervisor)" if restarts else "")
        )
    print(f"logs in {logs}")
    return 0 if all_alive else 3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["up", "down", "status"])
    ap.add_argument("--no-xsim", action="store_true", help="up: do not start the X simulator")
    ap.add_argument("--no-services", action="store_true", help="up: do not start the services")
    args = ap.parse_args(argv)
    settings = Settings()
    try:
        if args.action == "up":
            return up(settings, xsim=not args.no_xsim, services=not args.no_services)
        return {"down": down, "status": status}[args.action](settings)
    except local.StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
