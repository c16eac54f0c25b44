"""Input files must be regular files: a named pipe, a device or a folder is refused by name.

Why (docs/threat-model.md): opening a FIFO for reading blocks until a writer comes, and
/dev/zero never ends, so the kind of a file is checked before it is read (by stat, and for
small files read whole, by fstat on a descriptor opened without blocking). The message says
what the path is, not "file not found", and what to pass instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fairaudit.errors import InputError, arg


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words ("a folder", "a named pipe (FIFO)", ...)."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _refuse(path: Path, mode: int, what: str, argument: str | None) -> InputError:
    given = f"{arg(argument)} needs" if argument else "fairaudit needs"
    return InputError(
        f"is {kind_of(mode)}; {given} a regular file ({what}).",
        file=str(path),
        hint="Pass the path of a regular file (pipes and devices are not read: they may block or never end).",
        argument=argument,
    )


def check_regular_file(path: Path | str, *, what: str, argument: str | None = None) -> os.stat_result:
    """stat `path` (links followed) and refuse anything but an existing regular file."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError("file not found.", file=str(path), hint="Check the path.") from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or type(exc).__name__}).", file=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, st.st_mode, what, argument)
    return st


def read_regular_bytes(path: Path | str, *, limit: int, what: str, argument: str | None = None) -> bytes:
    """The bytes of a small regular file, at most `limit` of them (InputError beyond; `argument`
    names the argument that gave the path, fairaudit.errors.arg).

    Opened with O_NONBLOCK and checked with fstat before any read, so a FIFO (or a file
    swapped for one after a stat) is refused at once instead of blocking.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(
            f"file not found; {arg(argument) if argument else 'fairaudit'} needs {what}.",
            file=str(path),
            hint="Check the path.",
            argument=argument,
        ) from None
    except IsADirectoryError:
        raise _refuse(path, stat.S_IFDIR, what, argument) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or type(exc).__name__}).", file=str(path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, st.st_mode, what, argument)
        if st.st_size > limit:
            raise InputError(
                f"is {st.st_size} bytes; {what} is at most {limit} bytes.",
                file=str(path),
                hint="Check that the path names the right file.",
            )
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or type(exc).__name__}).", file=str(path)) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > limit:  # grew after the fstat
        raise InputError(f"is larger than {limit} bytes, the most {what} may be.", file=str(path))
    return data
