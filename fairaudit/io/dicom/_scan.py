"""Walk a folder for candidate files: recursive, sorted, each file once, no symlink loops.

Every regular file is a candidate (DICOM is recognized later by content, never by its
suffix). The walk is depth-first with each folder's entries sorted by name, so the order
is deterministic (sorted path component by component).

Symbolic links (see docs/dicom.md):
- a link whose target lies inside the scanned tree is not followed: the target is listed
  under its own path, so a file is never read twice and a link back up the tree (a loop)
  is never entered;
- a link to a file or folder outside the tree is not followed by default: it becomes a
  `skipped` entry (its target is never named: it may be a path with patient ids, or a
  system folder). With `follow_symlinks` (`--follow-symlinks`, or inside
  `following_symlinks(True)`) it is followed; each outside folder (by real path) is
  entered at most once and each outside file (by device and inode) is listed at most
  once, under the first path the walk meets, so loops outside the tree end too.
- `aliases` (mask folders, whose file names are ids): a link to a file inside the tree is
  listed under its own path too, since there it names another id; links to folders inside
  are still not entered (no loop).
Broken links and folders that cannot be listed are reported (`WalkEntry.problem`), never
fatal; sockets, FIFOs and devices are ignored (opening a FIFO would block).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fairaudit._util.privacy import shown_path

log = logging.getLogger(__name__)

#: The reason of a link the walk does not follow because it leaves the scanned folder.
OUTSIDE_LINK_REASON = "symbolic link leaving the folder (not followed; pass --follow-symlinks to follow it)"
# Whether walks follow links out of the folder when not told: set for the length of one
# command by following_symlinks() (the CLI's --follow-symlinks), so that every reader
# of the folder (cohort scan, model run, resume, progress totals) walks the same tree.
_follow_default = False


@contextmanager
def following_symlinks(enabled: bool) -> Iterator[None]:
    """Within the block, walks follow links out of the folder when `enabled` (--follow-symlinks)."""
    global _follow_default
    before, _follow_default = _follow_default, bool(enabled)
    try:
        yield
    finally:
        _follow_default = before


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
    follow: bool = False  # follow links out of the tree (--follow-symlinks)
    aliases: bool = False  # list links to files inside the tree under their own path too

    def inside(self, real: str) -> bool:
        return real == self.root_real or real.startswith(self.root_real.rstrip(os.sep) + os.sep)


def walk(root: Path, follow_symlinks: bool | None = None, *, aliases: bool = False) -> Iterator[WalkEntry]:
    """Every regular file under `root` (or `root` itself when it is a file), plus problems.

    `follow_symlinks`: follow links out of `root` (default: as set by following_symlinks()).
    Read when called, not when the walk starts, so a lazily consumed walk keeps its setting.
    `aliases`: list a link to a file inside the tree under the link's path too (see the
    module doc: a mask folder, where a name is an id).
    """
    follow = _follow_default if follow_symlinks is None else bool(follow_symlinks)
    return _walk(Path(root), follow, aliases)


def _walk(root: Path, follow: bool, aliases: bool = False) -> Iterator[WalkEntry]:
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
    state = _State(os.fspath(root), os.path.realpath(root), follow=follow, aliases=aliases)
    yield from _walk_dir(root, "", state, outside=False)


def _walk_dir(directory: Path, prefix: str, state: _State, outside: bool) -> Iterator[WalkEntry]:
    try:
        # Names only, sorted: a folder of 100,000 files held as DirEntry objects with their
        # stat results cost ~0.4 KiB a file for as long as the folder was being walked.
        with os.scandir(directory) as it:
            names = sorted(e.name for e in it)
    except OSError as exc:
        rel = prefix.rstrip("/") or "."
        log.warning("cannot list folder %s: %s", shown_path(rel), type(exc).__name__)
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
                if state.aliases and is_link and stat.S_ISREG(st.st_mode):
                    yield WalkEntry(state.top, rel)  # another name (id) for a file of the tree
                    continue
                log.debug("not following %s: its target is inside the scanned tree", shown_path(rel))
                continue
            if not state.follow:  # the target is not logged: it may name a patient or /etc
                yield WalkEntry(state.top, rel, ("skipped", OUTSIDE_LINK_REASON))
                continue
        if stat.S_ISDIR(st.st_mode):
            if leads_outside:
                if real in state.seen_dirs:
                    log.debug(
                        "not following %s: folder already scanned (link loop or alias)", shown_path(rel)
                    )
                    continue
                state.seen_dirs.add(real)
            yield from _walk_dir(Path(full), rel + "/", state, leads_outside)
        elif stat.S_ISREG(st.st_mode):
            if leads_outside:
                key = (st.st_dev, st.st_ino)
                if key in state.seen_files:
                    log.debug(
                        "not listing %s: the same file was already listed through a link", shown_path(rel)
                    )
                    continue
                state.seen_files.add(key)
            yield WalkEntry(state.top, rel)
        # sockets, FIFOs, devices: not files to read


def scan(root: Path, follow_symlinks: bool | None = None) -> Iterator[Path]:
    """Every regular file under `root`, recursively, in sorted order, each file once."""
    for entry in walk(root, follow_symlinks):
        if entry.problem is None:
            yield entry.path


def count_files(root: Path) -> int:
    """How many readable files `walk` finds (no list of them kept)."""
    return sum(1 for e in walk(root) if e.problem is None)


def count_entries(root: Path) -> int:
    """How many entries `walk` yields (the progress total): a second, metadata-only walk."""
    return sum(1 for _ in walk(root))
