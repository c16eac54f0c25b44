"""Handing freed memory back to the operating system between the phases of an audit."""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc (Linux) only
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Give the C allocator's free pages back to the OS (glibc's malloc_trim); False where
    there is no such call.

    numpy's large temporary arrays of one phase (the join's ids as integer codes, say) come
    from the C heap once glibc has raised its mmap threshold, and their pages stay resident
    after they are freed: the next phases' peaks (the statistics' worker processes, the
    reports) would then stack on the previous phase's high-water mark, which grows with the
    cohort.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
