"""The C allocator of an `xget` process: what large transient buffers leave in its heap is
given back to the system every few seconds.

A service handles buffers of 0.1-1 MB by the thousand (raw X pages, their JSON, record
batches). glibc serves an allocation above its mmap threshold with a mapping of its own,
unmapped when freed, and everything smaller from its heap. The threshold is dynamic: whenever
a mapped block is freed it rises to that block's size (up to 32 MiB), so soon page-sized
buffers come from the heap too. After a burst of pages in flight the heap is full of freed
space pinned between small long-lived objects, which glibc keeps: the gateway+scraper process
of a 1M-post bench task jumped from ~210 to ~390-590 MiB of RSS and kept it, while the Python
objects it held stayed around 130 MiB (tracemalloc).

Two cures were measured. Fixing the threshold (every large block mapped and unmapped) kept
the RSS flat but cost 0.5-1.2 ms more CPU per page decoded, parsed and encoded (+25-50%;
~25% more CPU in the gateway+scraper of a 200k-post run). `malloc_trim(0)` every few seconds
gives back the freed pages inside the heap as well (madvise), for a walk of the free lists:
in a synthetic burst of 60 pages in flight, RSS after the burst 143 MiB, 71 MiB after a trim,
the same as with the threshold fixed. The trim is what runs.
"""

from __future__ import annotations

import ctypes
import sys
import threading


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, other systems)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None


def trim() -> bool:
    """Give the heap's free pages back to the system now; False where that cannot be done."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False


_trimmer: threading.Thread | None = None


def start_trimming(interval_s: float) -> threading.Thread | None:
    """Trim every `interval_s` seconds in a daemon thread for the life of the process (one
    thread, however often asked); None when off (0) or not glibc. A thread, not a task: a
    busy event loop must not delay it."""
    global _trimmer
    fn = _malloc_trim()
    if interval_s <= 0 or fn is None:
        return None
    if _trimmer is not None and _trimmer.is_alive():
        return _trimmer
    pause = threading.Event()  # never set: wait() is an interruptible sleep

    def run() -> None:
        while not pause.wait(interval_s):
            fn(0)

    _trimmer = threading.Thread(target=run, name="malloc-trim", daemon=True)
    _trimmer.start()
    return _trimmer
