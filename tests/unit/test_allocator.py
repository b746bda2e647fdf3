"""libs/allocator.py: with the threshold fixed, a page-sized buffer gets a mapping of its own
(given back to the system when freed) even after larger blocks were freed; with glibc's
dynamic default it lands in the heap, where freed space stays with the process."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator"
)

# Frees a large mapped block (glibc's dynamic rule then raises its threshold past a page), then
# allocates a raw X page's worth of bytes and says where it landed.
PROBE = """
import sys
from libs.allocator import fix_mmap_threshold
print(fix_mmap_threshold(int(sys.argv[1])))
big = bytearray(4 << 20)
del big
page = bytes(700_000)
for line in open("/proc/self/maps"):
    if line.rstrip().endswith("[heap]"):
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        print("heap" if lo <= id(page) < hi else "own mapping")
        break
else:
    print("own mapping")
"""


def where_a_page_lands(kib: int) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(kib)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],  # the repo: `libs` importable
    )
    return out.stdout.split("\n")[:2]


def test_a_fixed_threshold_keeps_page_sized_buffers_off_the_heap():
    assert where_a_page_lands(128) == ["True", "own mapping"]


def test_glibcs_dynamic_default_puts_them_in_the_heap_after_a_large_block_is_freed():
    # What the setting's 0 keeps, and why the services fix the threshold.
    assert where_a_page_lands(0) == ["False", "heap"]


def test_every_xget_command_fixes_it_from_its_settings(make_settings, monkeypatch):
    import services.cli as cli

    asked: list[int] = []
    monkeypatch.setattr(cli, "fix_mmap_threshold", asked.append)

    async def nothing() -> int:
        return 7

    assert cli.run_loop(nothing(), make_settings(malloc_mmap_threshold_kb=256)) == 7
    assert asked == [256]
