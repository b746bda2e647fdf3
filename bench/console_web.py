"""The web console's first page in Chromium: JavaScript shipped (gzipped) and time to `load`.

    PYTHONPATH=. python bench/console_web.py [--base http://127.0.0.1:8080] [--runs 5]

Without --base it serves web/dist (built by `make setup`) at /console/ from a local static
server, which is all the first page needs: a browser with no session goes straight to the
sign-in page without asking the API. With --base it measures the console a gateway serves.

Each run is a fresh browser context (cold cache). The JavaScript is every script response of
the page up to `load` plus the chunks of its route (the sign-in page's lazy chunk included),
its size as shipped and gzipped at level 6 (what a gzip-serving proxy sends; the gateway
itself serves them uncompressed). Load time is `loadEventEnd` of the navigation entry, median
of the runs. `bench/console.py` prints these lines with its export ratio (`report()`).
Targets: ≤ 500 KB gzipped (Element Plus and ECharts are imported per component).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import statistics
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "web" / "dist"
CHROMIUM = "/usr/bin/chromium"
TARGET_KB = 500


@dataclass
class FirstPage:
    scripts: int
    js_bytes: int
    js_gzip_bytes: int
    load_ms: list[float]

    @property
    def load_ms_median(self) -> float:
        return statistics.median(self.load_ms)

    def lines(self) -> list[str]:
        return [
            f"console first page: {self.scripts} scripts, "
            f"{self.js_bytes / 1024:.1f} KB JS, {self.js_gzip_bytes / 1024:.1f} KB gzipped "
            f"(target <= {TARGET_KB} KB)",
            f"console first page load event: {self.load_ms_median:.0f} ms median of "
            f"{len(self.load_ms)} cold runs (min {min(self.load_ms):.0f}, "
            f"max {max(self.load_ms):.0f})",
        ]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on stderr
        pass


@contextmanager
def serve_dist(dist: Path = DIST) -> Iterator[str]:
    """web/dist at http://127.0.0.1:PORT/console/ (the gateway's path)."""
    if not (dist / "index.html").exists():
        raise SystemExit(f"no built console at {dist}: run `make setup` (npm ci + npm run build)")
    root = dist.parent / ".bench-root"
    root.mkdir(exist_ok=True)
    link = root / "console"
    if not link.exists():
        link.symlink_to(dist.resolve(), target_is_directory=True)
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        link.unlink()
        root.rmdir()


def measure(base: str, runs: int = 5) -> FirstPage:
    """Open {base}/console/ `runs` times, each in a fresh context, as a first visit."""
    from playwright.sync_api import Response, sync_playwright

    url = base.rstrip("/") + "/console/"
    loads: list[float] = []
    js: dict[str, bytes] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for i in range(runs):
                ctx = browser.new_context()
                page = ctx.new_page()
                got: dict[str, bytes] = {}

                def keep_script(r: Response, got: dict[str, bytes] = got) -> None:
                    if r.request.resource_type == "script" and r.ok:
                        got.setdefault(r.url, r.body())

                page.on("response", keep_script)
                page.goto(url, wait_until="load")
                # the sign-in form is rendered: the route's lazy chunk has arrived too
                page.locator("#login-username").wait_for()
                loads.append(
                    page.evaluate(
                        "() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return n.loadEventEnd - n.startTime }"
                    )
                )
                if i == 0:
                    js = dict(got)
                ctx.close()
        finally:
            browser.close()
    return FirstPage(
        scripts=len(js),
        js_bytes=sum(len(b) for b in js.values()),
        js_gzip_bytes=sum(len(gzip.compress(b, compresslevel=6)) for b in js.values()),
        load_ms=loads,
    )


def report(base: str | None = None, runs: int = 5) -> FirstPage:
    """Measure (serving web/dist locally when no base is given) and print the two lines."""
    if base:
        result = measure(base, runs)
    else:
        with serve_dist() as local:
            result = measure(local, runs)
    for line in result.lines():
        print(line, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="a running gateway, e.g. http://127.0.0.1:8080")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    result = report(args.base, args.runs)
    return 0 if result.js_gzip_bytes <= TARGET_KB * 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
