"""Freed memory given back to the system between a run's stages (glibc's allocator only).

A large run frees big blocks at every stage (the replay's batches, a scored chunk's columns,
the verdict's per-row arrays). glibc raises its mmap threshold each time a mapped block is
freed (up to 32 MiB), so that after the first stages blocks of several MiB come from the heap;
freed, they leave holes in it that stay counted in the process's resident memory until its top
is freed, and the next stage's blocks then fill the holes or grow the heap past them. At a
million exchanges with two candidates this held ~120 MiB of freed memory at the run's peak
(the report). :func:`return_freed_memory` (``malloc_trim(0)``) gives the holes' pages back;
``api.run`` calls it as each stage ends. Elsewhere (musl, macOS, Windows) nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any


@functools.cache
def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter runs on
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return libc


def return_freed_memory() -> bool:
    """Give the pages of the memory freed so far back to the system (see the module). False
    where the allocator is not glibc's (nothing done)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
