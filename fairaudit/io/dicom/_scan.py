"""Walk a folder for candidate files: recursive, sorted, each file once, no symlink loops.

Every regular file is a candidate (DICOM is recognized later by content, never by its
suffix). The walk is depth-first with each folder's entries sorted by name, so the order
is deterministic (sorted path component by component).

Symbolic links (see docs/dicom.md):
- a link whose target lies inside the scanned tree is not followed: the target is listed
  under its own path, so a file is never read twice and a link back up the tree (a loop)
  is never entered;
- a link to a file or folder outside the tree is followed; each outside folder (by real
  path) is entered at most once and each outside file (by device and inode) is listed at
  most once, under the first path the walk meets, so loops outside the tree end too.
Broken links and folders that cannot be listed are reported (`WalkEntry.problem`), never
fatal; sockets, FIFOs and devices are ignored (opening a FIFO would block).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WalkEntry:
    """One file the walk found, or one thing it could not use (`problem` set).

    It holds the folder it is relative to (one string shared by every entry of a walk) and
    its relative path; `path` is made when asked. A list of 50,000 entries holding a Path
    each cost 22 MiB (a resumed run keeps the list)."""

    base: str  # the walked folder (for a single file: its folder)
    rel: str  # posix path relative to `base`
    problem: tuple[str, str] | None = None  # (status, reason) when not a readable file

    @property
    def path(self) -> Path:
        return Path(self.base, self.rel)


@dataclass
class _State:
    top: str  # the walked folder, as given
    root_real: str
    seen_dirs: set[str] = field(default_factory=set)  # real paths of outside folders entered
    seen_files: set[tuple[int, int]] = field(default_factory=set)  # outside files listed

    def inside(self, real: str) -> bool:
        return real == self.root_real or real.startswith(self.root_real.rstrip(os.sep) + os.sep)


def walk(root: Path) -> Iterator[WalkEntry]:
    """Every regular file under `root` (or `root` itself when it is a file), plus problems."""
    root = Path(root)
    try:
        st = root.stat()
    except OSError as exc:
        yield WalkEntry(os.fspath(root.parent), root.name, ("failed", f"cannot open: {type(exc).__name__}"))
        return
    if stat.S_ISREG(st.st_mode):
        yield WalkEntry(os.fspath(root.parent), root.name)
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    yield from _walk_dir(root, "", _State(os.fspath(root), os.path.realpath(root)), outside=False)


def _walk_dir(directory: Path, prefix: str, state: _State, outside: bool) -> Iterator[WalkEntry]:
    try:
        # Names only, sorted: a folder of 100,000 files held as DirEntry objects with their
        # stat results cost ~0.4 KiB a file for as long as the folder was being walked.
        with os.scandir(directory) as it:
            names = sorted(e.name for e in it)
    except OSError as exc:
        rel = prefix.rstrip("/") or "."
        log.warning("cannot list folder %s: %s", rel, type(exc).__name__)
        yield WalkEntry(state.top, rel, ("failed", f"cannot list folder: {type(exc).__name__}"))
        return
    base = os.fspath(directory)
    for name in names:
        rel = prefix + name
        full = os.path.join(base, name)
        try:
            lst = os.lstat(full)
        except OSError:  # vanished between listing and stat
            yield WalkEntry(state.top, rel, ("failed", "file vanished during the scan"))
            continue
        is_link = stat.S_ISLNK(lst.st_mode)
        try:
            st = os.stat(full) if is_link else lst
        except OSError:
            yield WalkEntry(state.top, rel, ("skipped", "broken symbolic link"))
            continue
        leads_outside = outside or is_link
        real = ""
        if leads_outside:
            # Reached through a link: skip what the walk of the tree itself lists anyway.
            real = os.path.realpath(full)
            if state.inside(real):
                log.debug("not following %s: its target is inside the scanned tree", rel)
                continue
        if stat.S_ISDIR(st.st_mode):
            if leads_outside:
                if real in state.seen_dirs:
                    log.debug("not following %s: folder already scanned (link loop or alias)", rel)
                    continue
                state.seen_dirs.add(real)
            yield from _walk_dir(Path(full), rel + "/", state, leads_outside)
        elif stat.S_ISREG(st.st_mode):
            if leads_outside:
                key = (st.st_dev, st.st_ino)
                if key in state.seen_files:
                    log.debug("not listing %s: the same file was already listed through a link", rel)
                    continue
                state.seen_files.add(key)
            yield WalkEntry(state.top, rel)
        # sockets, FIFOs, devices: not files to read


def scan(root: Path) -> Iterator[Path]:
    """Every regular file under `root`, recursively, in sorted order, each file once."""
    for entry in walk(root):
        if entry.problem is None:
            yield entry.path


def count_files(root: Path) -> int:
    """How many readable files `walk` finds (no list of them kept)."""
    return sum(1 for e in walk(root) if e.problem is None)


def count_entries(root: Path) -> int:
    """How many entries `walk` yields (the progress total): a second, metadata-only walk."""
    return sum(1 for _ in walk(root))
