"""Write-then-rename for every output file: an interrupted run leaves no half-written file.

`atomic_path(path)` hands out a temporary name in the same folder; when the block ends
without an exception the temporary file replaces `path` (os.replace, atomic on POSIX),
otherwise it is deleted. Writers that take a path (pandas, PIL, numpy, safetensors) write
to the temporary name. Text goes through fairaudit.report.writers.atomic_write_text.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` that no other writer picks (pid + random suffix).

    The suffix keeps `path`'s own extension last, so writers that look at it (PIL, numpy)
    still pick the right format.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; rename it onto `path` when the block succeeds."""
    final = Path(path)
    tmp = temporary_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` atomically; return `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
