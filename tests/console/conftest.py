"""The web console in real Chromium (Playwright driving Debian's `chromium`), against one
running stack (`xget run all` as an OS process, the X simulator, noida-db, embedded chdb)
shared by the console tests of a session.

* ``console_stack`` — the stack with the built console (web/dist, built here if missing) and
  three console users (admin, operator, viewer) added with `xget users add`.
* ``browser`` — one Chromium for the session.
* ``Watched`` — a page that records console errors, page errors and failed requests.
* ``shot(page, name)`` — a full-page screenshot under test-output/console/ (XGET_TEST_OUTPUT).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from infra.service_process import REPO, ServiceProcess, settings_env, wait_until
from libs.settings import Settings
from tests.e2e.test_pipeline import pipeline_settings

WEB = REPO / "web"
DIST = WEB / "dist"
AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"
OUT = Path(os.environ.get("XGET_TEST_OUTPUT") or REPO / "test-output") / "console"
CHROMIUM = "/usr/bin/chromium"
LOCKOUT_S = 20  # short, so the lockout test also sees the lock end


def built_console() -> Path:
    """web/dist as `make setup` builds it; (re)built here when missing or older than a source,
    so the tests never drive a stale console (npm from the machine)."""
    modules = WEB / "node_modules"
    lock = modules / ".package-lock.json"
    if not lock.exists() or lock.stat().st_mtime < (WEB / "package-lock.json").stat().st_mtime:
        if modules.is_symlink():
            # A worktree's link to a shared install (a fresh checkout's package-lock.json is
            # newer than it): `npm ci` here would empty the shared install for every worktree
            # linking it. It is used as it is; only one that is not there stops the tests.
            if not lock.exists():
                raise RuntimeError(f"{modules} links to {modules.resolve()}, not installed")
        else:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    index = DIST / "index.html"
    sources = [p for d in ("src", "public") for p in (WEB / d).rglob("*") if p.is_file()]
    sources += [WEB / "index.html", WEB / "vite.config.ts", WEB / "package-lock.json"]
    if not index.exists() or index.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        subprocess.run(["npm", "run", "build"], cwd=WEB, check=True)
    return DIST


@dataclass
class ConsoleStack:
    settings: Settings
    proc: ServiceProcess
    base: str
    sim: str
    passwords: dict[str, str] = field(default_factory=dict)  # user name -> password
    api: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        token = self.settings.api_token.get_secret_value()
        self.api = httpx.Client(
            base_url=self.base, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )

    @property
    def console(self) -> str:
        return f"{self.base}/console/"

    def add_user(self, name: str, role: str) -> str:
        """`xget users add NAME --role ROLE --password-stdin`; waits until the gateway sees it."""
        password = f"pw-{uuid.uuid4().hex}"
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": str(REPO)}
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "users",
                "add",
                name,
                "--role",
                role,
                "--password-stdin",
            ],
            input=password + "\n",
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        wait_until(
            lambda: self.login(name, password).status_code == 200,
            60,
            f"the gateway to know console user {name}\n{self.proc.tail()}",
        )
        self.passwords[name] = password
        return password

    def login(self, name: str, password: str) -> httpx.Response:
        """A fresh sign-in over HTTP (its own cookie jar)."""
        with httpx.Client(base_url=self.base, timeout=30) as c:
            return c.post("/api/v1/auth/login", json={"username": name, "password": password})


@pytest.fixture(scope="package")
def console_stack(noida, xsim, tmp_path_factory) -> Iterator[ConsoleStack]:
    dist = built_console()
    tmp = tmp_path_factory.mktemp("console")
    settings = pipeline_settings(
        noida,
        xsim,
        tmp,
        str(tmp / "chdb"),
        console_dist_dir=str(dist),
        console_lockout_s=LOCKOUT_S,
        webhook_allow_hosts="127.0.0.1",  # the replay test's local webhook
        proxy_check_url=f"{xsim}/_sim/health",  # the proxies test's checks reach it
    )
    proc = ServiceProcess("console-all", ["all"], settings, tmp).start()
    stack = ConsoleStack(
        settings, proc, f"http://{settings.gateway_host}:{settings.gateway_port}", xsim
    )
    try:
        wait_until(
            lambda: proc.alive() and httpx.get(f"{stack.base}/health").status_code == 200,
            90,
            f"the gateway\n{proc.tail()}",
        )
        for name, role in (("admin1", "admin"), ("oper1", "operator"), ("viewer1", "viewer")):
            stack.add_user(name, role)
        yield stack
    finally:
        proc.stop()


# Package scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, which would break every later test that calls asyncio.run; and the
# console's stack need not run beside the rest of the suite.
@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page (own browser context: own cookies) recording what an operator would see go
    wrong: console errors, uncaught exceptions, requests that failed or answered >= 400."""

    def __init__(self, browser, stack: ConsoleStack):
        self.stack = stack
        self.context = browser.new_context(
            viewport={"width": 1440, "height": 900}, accept_downloads=True
        )
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                m.type == "error"
                and self.problems.append(f"console: {m.text} ({m.location.get('url')})")
            ),
        )
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # ERR_ABORTED is the browser cancelling a request (a navigation away, a download),
        # not a failure.
        self.page.on(
            "requestfailed",
            lambda r: (
                "ERR_ABORTED" not in (r.failure or "")
                and self.problems.append(f"failed: {r.method} {r.url} {r.failure}")
            ),
        )
        self.page.on(
            "response",
            lambda r: (
                r.status >= 400
                and self.problems.append(f"HTTP {r.status}: {r.request.method} {r.url}")
            ),
        )

    def goto(self, route: str) -> None:
        self.page.goto(f"{self.stack.console}#{route}")
        # the app may reorder the query; the page is the path
        self.page.wait_for_function(
            "r => location.hash.split('?')[0] === '#' + r.split('?')[0]", arg=route
        )

    def sign_in(self, name: str, password: str | None = None) -> None:
        self.goto("/login")
        self.page.fill("#login-username", name)
        self.page.fill("#login-password", password or self.stack.passwords[name])
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_test_id("role").wait_for()  # the signed-in shell
        self.page.get_by_test_id("pager").wait_for()  # the first page (Tweet search) settled

    def csrf(self) -> str:
        r = self.context.request.get(f"{self.stack.base}/api/v1/auth/me")
        assert r.status == 200, r.text()
        return r.json()["csrf_token"]

    def close(self) -> None:
        self.context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.call_report = report
    return report


@pytest.fixture
def watched(request, browser, console_stack) -> Iterator:
    pages: list[Watched] = []

    def make() -> Watched:
        w = Watched(browser, console_stack)
        pages.append(w)
        return w

    yield make
    report = getattr(request.node, "call_report", None)
    for i, w in enumerate(pages):
        if report is not None and report.failed:  # what the page showed when it failed
            shot(w.page, f"FAILED-{request.node.name}-{i}")
            print(f"page {i} problems: {w.problems}")
        w.close()


def settle(page, timeout_ms: int = 10_000) -> None:
    """Wait until no finite CSS animation or transition is running. A dialog fading in has
    its text at partial opacity: axe then measures a contrast the user never sees once the
    fade ends, and a screenshot catches it half drawn. Endless ones (spinners) are left."""
    page.wait_for_function(
        """() => document.getAnimations().every(a =>
            a.playState !== 'running' || a.effect?.getComputedTiming().iterations === Infinity)""",
        timeout=timeout_ms,
    )


def shot(page, name: str) -> Path:
    settle(page)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_serious(page) -> list[dict]:
    """Serious and critical axe-core violations of the page once its animations end."""
    settle(page)
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' '
                                                       + n.html.slice(0, 160))}))"""
    )
