"""Where fairaudit writes, and the files outside what the user named that it never touches.

The rules (docs/threat-model.md, "Files outside what the user named"):

- `--out` (and `--cache-dir`) may not lie inside an input folder (DICOM_DIR, --masks,
  --pred-masks): the reports would be written among the images, and the next scan would
  read them back. Nor may an input file sit in `--out` under a name fairaudit writes
  there (predictions.csv, results.json, ...): it would be overwritten. Both are refused
  (exit 2) before any work.
- `--out` and `--cache-dir` themselves are what the user named: if one is a symbolic
  link, it is followed (as `cp` or `tar -C` would). A folder fairaudit makes inside them
  (.fairaudit-cache, pred_masks) must be a real folder: a symbolic link there was planted
  by someone else, and is refused rather than written through.
- Files are never written through a symbolic link: reports and manifests are written to
  a fresh temporary name (O_EXCL) and renamed over the final name (a link there is
  replaced, its target untouched); files opened in place (the prediction cache) are
  opened with O_NOFOLLOW and must be regular files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from fairaudit.errors import InputError, arg


def _real(path: Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def is_within(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies below it, after resolving links on both sides."""
    real, top = _real(path), _real(folder)
    return real == top or top in real.parents


def check_output_location(
    outputs: Mapping[str, Path | None],
    *,
    folders: Mapping[str, Path | None],
    files: Mapping[str, Path | None] = {},  # noqa: B006 - read only
    written: Iterable[str] = (),
) -> None:
    """Refuse an output folder inside an input folder, or one that would overwrite an input file.

    Each mapping is keyed by the argument's name (fairaudit.errors.arg): `outputs`: folder
    written (out, cache_dir); `folders`: input folder (dicom_dir, masks, ...); `files`: input
    file; `written`: the file names the command writes directly into `out`. InputError
    (exit 2) naming both; checked before any work, so nothing is written.
    """
    names = set(written)
    for out_name, out in outputs.items():
        if out is None:
            continue
        for in_name, folder in folders.items():
            if folder is None or not Path(folder).expanduser().is_dir():
                continue
            if is_within(out, folder):
                raise InputError(
                    f"{arg(out_name)} {out} is inside the input folder {arg(in_name)} {folder}: the outputs "
                    "would be written among the inputs (and read back by the next scan).",
                    hint=f"Choose an {arg(out_name)} outside {folder}.",
                    argument=out_name,
                )
        if out_name != "out" or not names:
            continue
        for in_name, file in files.items():
            if file is None:
                continue
            file = Path(file).expanduser()
            # The folder the name is in, resolved; the name itself as given (a link named
            # predictions.csv in --out would be replaced, and that link is the input).
            if file.name in names and _real(file.parent) == _real(out):
                raise InputError(
                    f"{arg(in_name)} {file} is in {arg('out')} {out} under a name this audit writes there: "
                    "it would be overwritten.",
                    hint=f"Move the input, or choose another {arg('out')}.",
                    argument=in_name,
                )


def own_folder(path: Path) -> Path:
    """Make (or reuse) a folder fairaudit creates inside --out; refuse a symbolic link there.

    A link at that name was not made by fairaudit: writing through it would put files
    wherever it points (docs/threat-model.md).
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            path.mkdir(parents=True)
        except FileExistsError:  # made meanwhile: checked below
            pass
        except OSError as exc:
            raise InputError(f"cannot create the folder ({exc.strerror}).", file=str(path)) from None
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise InputError(
            "is a symbolic link: fairaudit writes only into a folder it made itself here, never "
            "through a link.",
            file=str(path),
            hint=f"Remove the link (or choose another {arg('out')}).",
        )
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(
            "exists and is not a folder.", file=str(path), hint=f"Remove it, or choose another {arg('out')}."
        )
    return path


def regular_or_missing(path: Path) -> bool:
    """True when `path` is a regular file, False when it does not exist; InputError otherwise.

    Checked with lstat: a symbolic link (to a file outside --out, /dev/zero, a FIFO) is
    refused, never read or written through.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISREG(st.st_mode):
        return True
    what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
    raise InputError(
        f"is {what}: fairaudit never reads or writes its own files through one.",
        file=str(path),
        hint="Remove it; it is recreated.",
    )


def open_nofollow(path: Path, flags: int, mode: int = 0o666) -> int:
    """os.open with O_NOFOLLOW (a link at `path` fails with ELOOP instead of being followed)."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), mode)
