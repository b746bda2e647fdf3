"""The local launcher's supervisor (infra/supervise.py): a part that dies comes back by itself
with a capped, doubling backoff that resets after a healthy run; a stop stops it for good —
also through `python -m infra.stack` (`make up` / `make down`)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time

from infra import local
from infra.service_process import wait_until
from infra.supervise import read_state, supervised_argv


def _starts(path) -> list[float]:
    try:
        return [float(x) for x in path.read_text().split()]
    except OSError:
        return []


def test_a_crashing_child_is_restarted_with_capped_doubling_backoff_then_stopped(tmp_path):
    starts, state = tmp_path / "starts", tmp_path / "state.json"
    # Each start appends its time; the first three crash at once, the fourth stays up 1.2 s
    # (longer than --healthy) before crashing, so the delay after it is the first one again.
    # Delays: 0.5 s, doubling, capped at 1.5 s.
    child = [
        sys.executable,
        "-c",
        (
            "import sys, time, pathlib; p = pathlib.Path(sys.argv[1]);"
            "n = len(p.read_text().split()) if p.exists() else 0;"
            "open(p, 'a').write(f'{time.monotonic()}\\n');"
            "time.sleep(1.2 if n == 3 else 0); sys.exit(3)"
        ),
        str(starts),
    ]
    sup = subprocess.Popen(
        supervised_argv(child, state, backoff=0.5, backoff_max=1.5, healthy=1.0),
        cwd=local.REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(local.REPO_ROOT)},
        start_new_session=True,
    )
    try:
        wait_until(lambda: len(_starts(starts)) >= 6, 30, "six starts")
        t = _starts(starts)
        gaps = [b - a for a, b in itertools.pairwise(t)]
        slack = 0.45  # a child's interpreter start, on a busy machine
        assert 0.5 <= gaps[0] < 0.5 + slack, gaps  # first delay
        assert 1.0 <= gaps[1] < 1.0 + slack, gaps  # doubled
        assert 1.5 <= gaps[2] < 1.5 + slack, gaps  # capped (not 2.0)
        assert 1.2 + 0.5 <= gaps[3] < 1.2 + 0.5 + slack, gaps  # after a healthy run: reset
        assert read_state(state)["restarts"] >= 5
        assert read_state(state)["last_exit"] == 3
    finally:
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(10) == 0
    n = len(_starts(starts))
    time.sleep(2.0)  # longer than any backoff: a stopped supervisor starts nothing more
    assert len(_starts(starts)) == n


def test_stack_restarts_a_killed_broker_and_down_stops_everything(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(local.REPO_ROOT),
        "XGET_KAFKA_PORT": str(local.free_port()),
        "XGET_DATA_DIR": str(tmp_path / "x"),
        "XGET_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'x' / 'clickhouse'}",
    }
    run = tmp_path / "x" / "run"

    def stack(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "infra.stack", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    supervisor = None
    try:
        r = stack("up", "--no-xsim", "--no-services")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "memory budget 1024 MiB" in r.stdout and "guard     started" in r.stdout, r.stdout
        guard = int((run / "guard.pid").read_text())
        supervisor = int((run / "noida.pid").read_text())
        broker = read_state(run / "noida.supervisor.json")["child_pid"]
        os.kill(broker, signal.SIGKILL)  # the broker dies: a crash
        wait_until(
            lambda: not local.tcp_ready("127.0.0.1", int(env["XGET_KAFKA_PORT"])),
            10,
            "the broker to be gone",
        )
        wait_until(
            lambda: (read_state(run / "noida.supervisor.json") or {}).get("restarts"),
            30,
            "the supervisor to restart the broker",
        )
        bootstrap = f"127.0.0.1:{env['XGET_KAFKA_PORT']}"
        wait_until(lambda: local.kafka_ready(bootstrap), 60, "the broker to answer again")
        r = stack("status")
        assert r.returncode == 0 and "restarted 1x" in r.stdout, r.stdout
        broker = read_state(run / "noida.supervisor.json")["child_pid"]  # the new one
    finally:
        r = stack("down")
    assert "noida     stopped" in r.stdout, r.stdout + r.stderr
    assert "guard     stopped" in r.stdout, r.stdout
    assert supervisor is not None and not local._group_alive(supervisor)
    assert not local._group_alive(guard)
    assert not local.pid_alive(broker)
    time.sleep(2.0)  # longer than the first backoff: nothing came back
    assert not local.tcp_ready("127.0.0.1", int(env["XGET_KAFKA_PORT"]))


def test_a_killed_supervisor_takes_its_child_with_it(tmp_path):
    state = tmp_path / "state.json"
    sup = subprocess.Popen(
        supervised_argv([sys.executable, "-c", "import time; time.sleep(120)"], state),
        cwd=local.REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(local.REPO_ROOT)},
        start_new_session=True,
    )
    child = wait_until(lambda: (read_state(state) or {}).get("child_pid"), 30, "the child")
    sup.kill()
    sup.wait(10)
    wait_until(lambda: not local.pid_alive(child), 10, "the child to die with its supervisor")
