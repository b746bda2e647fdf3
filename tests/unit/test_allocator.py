"""libs/allocator.py: after a burst of page-sized buffers, glibc keeps the freed space in its
heap; a trim gives it back to the system, and every xget command trims periodically."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator"
)

# A scraper's pattern: pages (~0.7 MB of text, its JSON, its bytes) in flight by the dozen,
# then by the handful, with small long-lived objects allocated between them. Prints the RSS
# (MiB) after the burst, then after one trim.
BURST = """
import json, random
from libs.allocator import trim

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

page = json.dumps({"posts": [{"id": i, "text": "x" * 300} for i in range(2000)]})
random.seed(1)
inflight, keep = [], []
for i in range(1200):
    inflight.append((page.encode().decode(), json.loads(page), page.encode()))
    keep.append(bytes(random.randint(600, 4000)))
    if len(keep) > 400:
        keep.pop(random.randrange(len(keep)))
    limit = 60 if (i // 300) % 2 == 0 else 5
    while len(inflight) > limit:
        inflight.pop(0)
after_burst = rss()
assert trim()
print(after_burst, rss())
"""


def test_a_trim_gives_back_what_a_burst_of_pages_left_in_the_heap():
    out = subprocess.run(
        [sys.executable, "-c", BURST],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],  # the repo: `libs` importable
    )
    after_burst, after_trim = (int(x) for x in out.stdout.split())
    # ~5 pages in flight need ~25 MiB; the burst of 60 left several times that in the heap.
    assert after_trim < after_burst * 0.7, (after_burst, after_trim)


def test_every_xget_command_trims_periodically_from_its_settings(make_settings, monkeypatch):
    import services.cli as cli

    asked: list[float] = []
    monkeypatch.setattr(cli, "start_trimming", asked.append)

    async def nothing() -> int:
        return 7

    assert cli.run_loop(nothing(), make_settings(malloc_trim_interval_s=2.5)) == 7
    assert asked == [2.5]


def test_the_trimming_thread_is_started_once_and_off_at_zero():
    from libs.allocator import start_trimming

    assert start_trimming(0) is None
    t = start_trimming(3600)
    assert t is not None and t.is_alive() and t.daemon
    assert start_trimming(3600) is t
