"""Write-then-rename for every output file, and one set of outputs per run.

An interrupted run leaves no half-written file, and no mix of two runs' files in --out.

`atomic_path(path)` hands out a temporary name in the same folder; when the block ends
without an exception the temporary file replaces `path` (os.replace, atomic on POSIX),
otherwise it is deleted. Writers that take a path (pandas, PIL, numpy, safetensors) write
to the temporary name. Text goes through fairaudit.report.writers.atomic_write_text.

`output_set(out)` stages a whole run's files (results.json, reports, manifest, a model
run's predictions.csv and pred_masks/, normalize's images/) in a fresh hidden folder of
--out, then moves them into place: first the previous run's files of the set away
(results.json first), then the new ones in (results.json last). A results.json in --out
therefore always stands with its own companions; leftovers of killed runs (staging
folders, .tmp files) are removed by the next run (docs/threat-model.md).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` that no other writer picks (pid + random suffix).

    The suffix keeps `path`'s own extension last, so writers that look at it (PIL, numpy)
    still pick the right format.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; flush it to disk and rename it onto `path` when the
    block succeeds. A reader (a CI step, a browser) never sees a half-written file, and a
    crash leaves the previous file intact."""
    final = Path(path)
    tmp = temporary_name(final)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` atomically; return `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write `text` as UTF-8 with the newlines as given (no translation), atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _fsync(path: Path, *, strict: bool = True) -> None:
    """Flush `path` (a written file, or a folder after a rename) to disk. A missing file is
    left to os.replace; `strict=False` (folders) ignores filesystems that cannot sync one."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if strict and Path(path).exists():
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- the set of outputs
#
# One run's files (results.json and its companions) must reach --out as one set: a reader
# never finds files of two runs side by side, nor a results.json whose companions are
# missing, however the run ends (docs/threat-model.md, "outputs"). Every command that
# writes a report set writes it through `output_set`.

#: Every name a fairaudit command writes into --out (any command: one --out holds one set).
SET_FILES: tuple[str, ...] = (
    "results.json",
    "normalize.json",
    "augment_check.json",
    "report.html",
    "report.md",
    "junit.xml",
    "model_card.json",
    "manifest.csv",
    "segmentation_cases.csv",
    "predictions.csv",
    "site_normalizer.json",
    "augment_records.jsonl",
)
#: Folders of per-image outputs (pred_masks of a model run; images and previews of normalize).
SET_FOLDERS: dict[str, frozenset[str]] = {
    "pred_masks": frozenset({".png"}),
    "images": frozenset({".npy", ".json"}),
    "previews": frozenset({".png"}),
}
#: The files that say "this set is complete": moved into place last, removed first.
ANCHORS: tuple[str, ...] = ("results.json", "normalize.json", "augment_check.json")

STAGING_PREFIX = ".fairaudit-staging"
#: The advisory lock a run holds on --out from before it stages anything until its set is
#: published (or dropped); removed then. Not part of the set, never an orphan nor a user file.
LOCK_FILE = ".fairaudit.lock"
_STAGING = re.compile(rf"^{re.escape(STAGING_PREFIX)}\.(\d+)\.[0-9a-f]{{8}}$")
# temporary_name, atomic_write_text, the probe, and augment-check's record spool (older runs).
_ORPHAN_TMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp(\.[^.]*)?$|^\.augment_records\.(\d+)\.tmp$")
_CACHE_DIR = ".fairaudit-cache"


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a live run's staging folder is not an orphan)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_orphans(out: Path) -> int:
    """Remove what runs killed earlier left in `out`: staging folders and temporary files
    (`.NAME.PID.HEX.tmp...`) whose process is gone. Returns how many were removed."""
    removed = 0
    folders = [out, out / _CACHE_DIR, *(out / name for name in SET_FOLDERS)]
    for folder in folders:
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.startswith("."):
                continue
            m = _STAGING.match(entry.name) if folder == out else None
            t = _ORPHAN_TMP.match(entry.name)
            pid = m.group(1) if m else (t.group(1) or t.group(3)) if t else None
            if pid is None or _alive(int(pid)):
                continue
            _remove(Path(entry.path))
            removed += 1
    if removed:
        log.info("removed %d leftovers of interrupted runs in %s", removed, out)
    return removed


def _ours(folder: Path) -> bool:
    """A family folder holds only files with its own suffixes (what fairaudit writes there)."""
    allowed = SET_FOLDERS[folder.name]
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    return all(
        e.is_file(follow_symlinks=False) and (Path(e.name).suffix in allowed or _ORPHAN_TMP.match(e.name))
        for e in entries
    )


def _within(path: Path, others: list[Path]) -> bool:
    """`path` is one of `others` or holds one of them (an input the run reads)."""
    here = Path(os.path.abspath(path))
    return any(p == here or here in p.parents for p in others)


def _no_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _unwritable(exc: OSError) -> bool:
    return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)


class OutputSet:
    """One run's outputs, written into a fresh hidden folder of --out and moved into place
    as a set (`publish`): the previous run's files of the set first moved away (anchors
    first), then the new ones moved in (anchors last). `in_place` (re-rendering beside the
    results.json read) replaces the written files only, removing nothing. `folders`: the
    folders of SET_FOLDERS this run writes, checked up front (see `publish`)."""

    def __init__(
        self,
        out: Path | str,
        *,
        protect: Iterable[Any] = (),
        in_place: bool = False,
        folders: Iterable[str] = (),
    ) -> None:
        from fairaudit.errors import InputError, arg

        self.out = Path(out)
        self.in_place = in_place
        self.protect = [
            q
            for p in protect
            if isinstance(p, (str, os.PathLike))
            for q in {Path(os.path.abspath(p)), Path(p).resolve()}
        ]
        self._done = False
        if self.out.exists() and not self.out.is_dir():
            raise InputError(
                f"{arg('out')} names an existing file, not a folder.",
                file=str(self.out),
                hint="Pass a folder (it is created if missing).",
                argument="out",
            )
        self._created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"the output folder cannot be created ({exc.strerror or exc}).", file=str(self.out)
            ) from None
        self._lock: int | None = None
        try:
            self._lock = lock_out(self.out)
        except OSError as exc:  # a read-only or full --out: the same message as the probe's
            self._forget_folder()
            error = write_error(self.out, exc)
            if error is exc:
                raise
            raise error from None
        except BaseException:
            self._forget_folder()
            raise
        try:
            for name in folders:  # the check publish makes, before the work
                self._check_folder(name)
        except BaseException:
            self._release()
            raise
        remove_orphans(self.out)
        self.staging = self.out / f"{STAGING_PREFIX}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            self.staging.mkdir()
            probe = self.staging / f".probe.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            with open(probe, "wb") as fh:  # a read-only or full disk fails here, before the work
                fh.write(b"\0" * 4096)
                fh.flush()
                os.fsync(fh.fileno())
            probe.unlink()
        except OSError as exc:
            self.discard()
            error = write_error(self.out, exc)
            if error is exc:
                raise
            raise error from None

    def _check_folder(self, name: str) -> None:
        """A folder this run writes must be absent, or a previous run's (never an input, nor a
        folder of someone else's files)."""
        from fairaudit.errors import InputError, arg

        target = self.out / name
        if not (target.exists() or target.is_symlink()):
            return
        if _within(target, self.protect):
            raise InputError(
                f"the output {name} would replace an input of this run.",
                file=str(self.out),
                hint=f"Choose another {arg('out')}.",
            )
        if not target.is_symlink() and not _ours(target):
            raise InputError(
                f"{name}/ already exists there and holds files fairaudit did not write.",
                file=str(self.out),
                hint=f"Choose another {arg('out')}, or move that folder.",
            )

    def path(self, name: str) -> Path:
        """Where to write output `name` (a file or folder name in --out) during the run."""
        return self.staging / name

    def final(self, path: Path | str) -> Path:
        """The place in --out of a path handed out by `path` (other paths unchanged)."""
        path = Path(path)
        try:
            return self.out / path.relative_to(self.staging)
        except ValueError:
            return path

    def publish(self, only: Iterable[str] | None = None) -> None:
        """Move the staged files into --out as one set (see the class doc); idempotent.

        `only`: publish these names alone (a failed run's manifest.csv, which says why)."""
        from fairaudit.errors import InputError, arg

        if self._done:
            return
        keep = None if only is None else set(only)
        new = sorted(
            (
                e.name
                for e in os.scandir(self.staging)
                if e.name != ".old" and not _ORPHAN_TMP.match(e.name) and (keep is None or e.name in keep)
            ),
            key=lambda n: (n in ANCHORS, n),
        )
        stale: list[str] = []
        for name in () if self.in_place else (*ANCHORS, *SET_FILES, *SET_FOLDERS):
            target = self.out / name
            if name in stale or not (target.exists() or target.is_symlink()) or _within(target, self.protect):
                continue
            if name in SET_FOLDERS and not target.is_symlink() and not _ours(target):
                continue  # a folder of someone else's files: never removed
            stale.append(name)
        for name in new:  # refuse before anything moves: an input or a foreign folder in the way
            target = self.out / name
            if _within(target, self.protect):
                raise InputError(
                    f"the output {name} would replace an input of this run.",
                    file=str(self.out),
                    hint=f"Choose another {arg('out')}.",
                )
            if (self.staging / name).is_dir() and name not in stale:
                self._check_folder(name)
        trash = self.staging / ".old"
        trash.mkdir(exist_ok=True)
        step = _test_kill(0)
        for name in stale:  # anchors first: from here on no results.json claims a complete set
            os.rename(self.out / name, trash / name)
            step = _test_kill(step + 1)
        for name in new:  # anchors last
            os.replace(self.staging / name, self.out / name)
            step = _test_kill(step + 1)
        _fsync(self.out, strict=False)
        self._done = True
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()

    def discard(self) -> None:
        """Drop the staged files (a failed or interrupted run leaves --out as it was)."""
        self._done = True
        shutil.rmtree(self.staging, ignore_errors=True)
        self._release()
        self._forget_folder()

    def _release(self) -> None:
        """Give up the lock on --out (idempotent): the set is published or dropped."""
        if self._lock is not None:
            unlock_out(self.out, self._lock)
            self._lock = None

    def _forget_folder(self) -> None:
        """Remove --out if this run made it for nothing (it is empty again)."""
        if self._created:
            try:
                self.out.rmdir()
            except OSError:
                pass


def lock_out(out: Path) -> int | None:
    """Take the advisory lock on `out` (flock on LOCK_FILE inside it) and return its descriptor.

    Two runs writing into one --out at once would interleave their sets; the second is
    refused at once (InputError, exit 2) instead of waiting. The file is opened with
    O_NOFOLLOW, as the prediction cache is (a link planted there is refused, its target never
    created or locked), and must be a regular file. A run removes it when done, so a run that
    opened the old file before that retries on the new one (the inode check). None (no lock,
    with a warning) where the file system has no flock (some network mounts)."""
    import fcntl
    import stat

    from fairaudit._util.safe_paths import open_nofollow
    from fairaudit.errors import InputError, arg

    path = out / LOCK_FILE
    busy = InputError(
        f"another fairaudit run is writing to {out}; wait for it or choose another {arg('out')}.",
        argument="out",
    )
    for _ in range(5):
        try:
            fd = open_nofollow(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError(
                    "is a symbolic link: fairaudit never opens its lock file through one.",
                    file=str(path),
                    hint="Remove it; it is recreated.",
                ) from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(
                    "is not a regular file: fairaudit keeps its lock there.",
                    file=str(path),
                    hint="Remove it; it is recreated.",
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                log.warning(
                    "cannot lock %s (%s): two runs into it at once are not refused", out, exc.strerror
                )
                os.close(fd)
                return None
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the run that held it removed it meanwhile: lock the new one
    raise busy


def _same_file(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path` (not removed or replaced since it was opened)."""
    try:
        here, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def unlock_out(out: Path, fd: int) -> None:
    """Remove the lock file (while holding it, so no run can lock the old one and pass the
    inode check) and give up the lock: --out holds no file of the lock after a run."""
    try:
        if _same_file(fd, out / LOCK_FILE):
            (out / LOCK_FILE).unlink(missing_ok=True)
    finally:
        os.close(fd)


def _test_kill(step: int) -> int:
    """`FAIRAUDIT_TEST_KILL_AT_STEP=N` (tests only): SIGKILL this process at step N of a
    publish (0: all staged, nothing moved; then after each file moved), so a test can see
    what a kill -9 at that moment leaves. Returns `step`."""
    at = os.environ.get("FAIRAUDIT_TEST_KILL_AT_STEP", "")
    if at.isdigit() and int(at) == step:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    return step


def write_error(out: Path, exc: OSError) -> Exception:
    """An OSError met writing the outputs as the InputError to show (exit 2), or `exc`."""
    from fairaudit.errors import InputError, arg

    if _no_space(exc):
        return InputError(
            "no space left on the device while writing the outputs; nothing was written.",
            file=str(out),
            hint=f"Free some space or choose another {arg('out')}.",
        )
    if _unwritable(exc):
        return InputError(
            f"the output folder is not writable ({exc.strerror or exc}).",
            file=str(out),
            hint=f"Choose a folder you can write to with {arg('out')}.",
        )
    return exc


@contextmanager
def output_set(
    out: Path | str,
    *,
    protect: Iterable[Any] = (),
    shared: OutputSet | None = None,
    in_place: bool = False,
    folders: Iterable[str] = (),
) -> Iterator[OutputSet]:
    """An OutputSet for one run, published when the block succeeds, discarded otherwise.

    `shared`: a set a caller opened (a model run writes predictions.csv before the audit
    writes its reports) and will publish itself. A full disk or an unwritable --out met
    during the block becomes an InputError (exit 2) naming the folder.
    """
    if shared is not None:
        yield shared
        return
    outs = OutputSet(out, protect=protect, in_place=in_place, folders=folders)
    try:
        yield outs
        outs.publish()
    except OSError as exc:
        outs.discard()
        error = write_error(outs.out, exc) if _no_space(exc) or _in_out(exc, outs.out) else exc
        if error is exc:
            raise
        raise error from None
    except BaseException:
        outs.discard()
        raise


def _in_out(exc: OSError, out: Path) -> bool:
    """A permission error on a path inside --out (not on an input)."""
    if not _unwritable(exc) or not exc.filename:
        return False
    here = Path(os.path.abspath(out))
    p = Path(os.path.abspath(exc.filename))
    return p == here or here in p.parents
