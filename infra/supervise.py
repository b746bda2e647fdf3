"""Keep one local process running: ``python -m infra.supervise [--state FILE] -- ARGV…``.

The local launcher (``make up``, the tests' supervised stacks) starts every long-running part
through this: when the child exits by itself (a crash, a SIGKILL, an unhandled error), it is
started again after a backoff that doubles from ``--backoff`` up to ``--backoff-max`` and
goes back to ``--backoff`` once a child has run ``--healthy`` seconds. In production the
orchestrator (Kubernetes) does this.

Stopping: SIGTERM or SIGINT to the supervisor (``make down`` signals its process group) is
forwarded once to the child, which runs in a process group of its own (a broker saving its data
on SIGTERM gets one signal, not two); the supervisor waits for it and exits without
restarting: a stopped stack stays stopped. A supervisor that dies (SIGKILL) takes its child
with it (the kernel's parent-death signal), so nothing is left running unsupervised.

``--state FILE`` holds JSON ``{"child_pid", "restarts", "last_exit", "supervisor_pid"}``,
rewritten at each start, so a test can kill the child alone (a crash) and see it come back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class Supervisor:
    def __init__(
        self,
        argv: list[str],
        *,
        state: Path | None = None,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        healthy_s: float = 60.0,
    ):
        self.argv = argv
        self.state = state
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.healthy_s = healthy_s
        self.stopping: int | None = None  # the signal that stops us
        self.child: subprocess.Popen | None = None
        self.restarts = 0
        self.last_exit: int | None = None

    def _signal(self, signum, _frame) -> None:
        first = self.stopping is None
        self.stopping = signum
        if first and self.child is not None and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signum)  # the child's own group: its children too
            except ProcessLookupError:
                pass

    def _write_state(self) -> None:
        if self.state is None:
            return
        tmp = self.state.with_name(self.state.name + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "supervisor_pid": os.getpid(),
                    "restarts": self.restarts,
                    "child_pid": self.child.pid if self.child is not None else None,
                    "last_exit": self.last_exit,
                }
            )
        )
        tmp.replace(self.state)

    def _sleep(self, seconds: float) -> None:
        """Sleep unless told to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while self.stopping is None and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        delay = self.backoff_s
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(
                self.argv, start_new_session=True, preexec_fn=_die_with_parent
            )
            self._write_state()
            code = self.child.wait()
            self.last_exit = code
            if self.stopping is not None:
                self._write_state()
                return 0
            ran = time.monotonic() - started
            if ran >= self.healthy_s:
                delay = self.backoff_s  # it ran well: the next crash is a fresh one
            print(
                f"supervise: {' '.join(self.argv[:4])}… exited with {code} after {ran:.1f}s;"
                f" restarting in {delay:.1f}s",
                file=sys.stderr,
                flush=True,
            )
            self.restarts += 1
            self._write_state()
            self._sleep(delay)
            if self.stopping is not None:
                return 0
            delay = min(self.backoff_max_s, delay * 2)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the supervisor dies (Linux prctl)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def supervised_argv(argv: list[str], state: Path | None = None, **opts: float) -> list[str]:
    """The command line that runs `argv` under this supervisor."""
    out = [sys.executable, "-m", "infra.supervise"]
    if state is not None:
        out += ["--state", str(state)]
    for name, value in opts.items():
        out += [f"--{name.replace('_', '-')}", str(value)]
    return [*out, "--", *argv]


def read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m infra.supervise", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--state", type=Path, help="JSON file with the child's pid and restarts")
    ap.add_argument("--backoff", type=float, default=1.0, help="first restart delay, s")
    ap.add_argument("--backoff-max", type=float, default=30.0, help="restart delay cap, s")
    ap.add_argument(
        "--healthy", type=float, default=60.0, help="a child that ran this long resets the delay, s"
    )
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    child = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not child:
        ap.error("no command to supervise (put it after --)")
    return Supervisor(
        child,
        state=args.state,
        backoff_s=args.backoff,
        backoff_max_s=args.backoff_max,
        healthy_s=args.healthy,
    ).run()


if __name__ == "__main__":
    sys.exit(main())
