"""Process memory: keep glibc's heap from fragmenting under loops over many images.

glibc raises its mmap threshold to the size of the largest block freed (up to 32 MB), so the
per-image arrays of tens of MB are then carved from the heap, which fragments: `evaluate`
grew about 30 MB an image (1.39 GB after 6 images, 1.93 GB after 24).  A fixed 1 MiB
threshold gives each large array its own mapping, returned to the system when freed: 1.13 GB
after 6 and 1.14 GB after 24, with identical metrics.  Its time cost was within the noise of a
loaded machine (6 images: 55-68 s without, 70 s with).  Only `evaluate` and the adaptation
benchmarks, whose loops decide image after image, call this; a user's own MALLOC_MMAP_THRESHOLD_
wins, and other C libraries are left alone.
"""

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 1 << 20


def limit_heap_fragmentation() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD_BYTES; whether it was set (False off glibc)."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
