"""Keep the memory held by a long run flat on glibc.

glibc serves a large allocation with its own mmap and raises that threshold to the size of
each such block freed, up to 32 MiB; from then on, the model's large temporary buffers come
from the heap, where they fragment it, and the peak RSS of a run drifts by tens of MB with the
timing of allocations. A fixed threshold keeps buffers above it out of the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 4 * 2**20


def fix_mmap_threshold() -> bool:
    """Sets a fixed mmap threshold where the C library is glibc; returns whether it did."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
