"""The C allocator of an `xget` process, tuned for large transient buffers.

A service handles buffers of 0.1-1 MB by the thousand (raw X pages, their JSON, record
batches). glibc serves an allocation above M_MMAP_THRESHOLD with a mapping of its own, given
back to the system when freed, and everything smaller from its heap. Its default threshold is
dynamic: whenever a mapped block is freed, the threshold rises to that block's size (up to
32 MiB). After the first large block is freed, page-sized buffers come from the heap, and a
heap pinned by small long-lived objects between them keeps the freed space: the
gateway+scraper process of a 1M-post bench task jumped from ~210 to ~390-590 MiB of RSS after
about one X rate-limit window and kept it, while the Python objects it held stayed around
130 MiB (tracemalloc). Setting the threshold explicitly also turns the dynamic rule off
(mallopt(3)), so large buffers always map and unmap.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def fix_mmap_threshold(kib: int) -> bool:
    """Fix glibc's mmap threshold at `kib` KiB; False when nothing was set (0, or a C library
    without glibc's mallopt, e.g. musl's stub or another OS)."""
    if kib <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, kib * 1024))
