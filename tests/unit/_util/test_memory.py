"""release_free_memory: freed heap pages leave the process's resident memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fairaudit._util.memory import _malloc_trim

_SCRIPT = textwrap.dedent(
    """
    import ctypes, os
    from fairaudit._util.memory import release_free_memory

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    # 300 blocks of 96 KiB (under glibc's mmap threshold: from the heap), touched, each
    # followed by a small block that stays: freeing the large ones leaves holes in the
    # heap, not a shorter heap.
    blocks, pins = [], []
    for _ in range(300):
        blocks.append(libc.malloc(96 * 1024))
        pins.append(libc.malloc(4096))
        ctypes.memset(blocks[-1], 1, 96 * 1024)
    for b in blocks:
        libc.free(b)
    before = rss()
    released = release_free_memory()
    print(before, rss(), released)
    """
)


@pytest.mark.skipif(_malloc_trim() is None, reason="glibc only")
@pytest.mark.xdist_group("measured")  # bounds time or memory: never beside another such test
def test_freed_heap_pages_go_back_to_the_os() -> None:
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True)
    before, after, released = out.stdout.split()
    assert released == "True"
    # ~28 MiB were freed into the middle of the heap: resident until trimmed.
    assert int(before) - int(after) > 20 * 2**20
