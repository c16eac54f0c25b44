"""A prediction cache so that an interrupted model run can resume (`audit --resume`).

Folder layout (default OUT_DIR/.fairaudit-cache/, or --cache-dir), one pair per model:

    <key>.json     which model the scores belong to (name, sha256, task, device, spec)
    <key>.scores   append-only lines "<sha256 of the file's bytes> <score> <check>"
                   (a multi-output model: its scores joined by commas, in its classes' order)

`key` hashes the model's sha256 together with everything else that changes its output
(task, output kind, preprocessing spec, device), so scores of another model or another
preprocessing are never reused. Lines are appended after every batch and flushed, so an
interrupted run keeps what it scored; a line cut short by a crash is ignored on reading.
The cache holds content hashes and scores only: no path, no DICOM id, no patient
identifier. Scores are written with repr(), so a resumed run audits the exact numbers.

The cache is not trusted (docs/threat-model.md): each line carries its own check, the
first 16 hex digits of sha256 over the key, the file digest and the score as written, and
a score must be a probability (finite, in [0, 1]). A line that fails either (edited,
damaged, from another model's cache or an older format) is not used: that file is
predicted again, with one warning naming the cache. The check finds mistakes and
careless edits, not a forger who reads this module (docs/threat-model.md). The cache
files are never read or written through a symbolic link (fairaudit._util.safe_paths), and
the default folder inside --out must be a real folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from fairaudit._util.hashing import file_sha256
from fairaudit.errors import InputError, arg

log = logging.getLogger(__name__)

CACHE_DIR = ".fairaudit-cache"
_LINE = re.compile(r"^([0-9a-f]{64}) (\S+) ([0-9a-f]{16})$")


def line_check(key: str, digest: str, score: str) -> str:
    """The check written with each cache line (see the module doc)."""
    return hashlib.sha256(f"{key} {digest} {score}".encode("ascii")).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes (a DICOM file is read once more, from the page cache)."""
    return file_sha256(path)


def model_key(info: dict[str, Any]) -> str:
    """The cache key of a predictor's outputs (see the module doc)."""
    parts = {k: info.get(k) for k in ("sha256", "task", "output", "device", "preprocessing")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class PredictionCache:
    """content sha256 -> score for one model; `load()` reads, `add()` appends and flushes."""

    def __init__(self, folder: Path, info: dict[str, Any], *, own_folder: bool = False) -> None:
        """`own_folder`: the folder is fairaudit's own (the default inside --out), so a
        symbolic link there is refused; a --cache-dir the user named may be a link.
        Raises InputError (exit 2) before any work when the cache files are links or not
        regular files."""
        from fairaudit._util.safe_paths import own_folder as _own
        from fairaudit._util.safe_paths import regular_or_missing

        self.folder = Path(folder)
        self.key = model_key(info)
        self.info = {k: info.get(k) for k in ("name", "sha256", "task", "output", "device", "preprocessing")}
        self.path = self.folder / f"{self.key}.scores"
        self._handle: Any = None
        if own_folder and os.path.lexists(self.folder):
            _own(self.folder)
        if self.folder.is_dir():
            regular_or_missing(self.path)
            regular_or_missing(self.folder / f"{self.key}.json")
        self._own = own_folder

    def load(self) -> dict[str, float | tuple[float, ...]]:
        """Every score cached for this model that passes its check (see the module doc).

        A failing line is left out (that file is predicted again) and counted in one
        warning naming the cache; a last line cut short by a crash is left out silently.
        """
        from fairaudit._util.safe_paths import open_nofollow, regular_or_missing

        out: dict[str, float | tuple[float, ...]] = {}
        if not regular_or_missing(self.path):
            return out
        bad = 0
        try:
            with os.fdopen(open_nofollow(self.path, os.O_RDONLY), "rb") as fh:
                data = fh.read()
        except OSError as exc:  # e.g. a link planted since the check (ELOOP)
            raise InputError(
                f"cannot read the prediction cache ({exc.strerror}).",
                file=str(self.path),
                hint=f"Remove it (it is recreated), or pass another {arg('cache_dir')}.",
                argument="cache_dir",
            ) from None
        lines = data.split(b"\n")
        last = lines.pop()  # b"" after a final newline; else a line a crash cut short
        if last:
            log.debug("%s: ignoring a last line cut short", self.path)
        for raw in lines:
            score = self._parse(raw)
            if score is None:
                bad += 1 if raw.strip() else 0
                continue
            out[score[0]] = score[1]
        if bad:
            log.warning(
                "prediction cache %s: %d line(s) failed their check (edited, damaged, or written by "
                "another version); those files are predicted again",
                self.path,
                bad,
            )
            self._rewrite(out)
        return out

    def _rewrite(self, scores: dict[str, float | tuple[float, ...]]) -> None:
        """Keep only the lines that passed (renamed into place: no link followed), so the
        next resume does not warn about the same lines again."""
        from fairaudit._util.atomic import atomic_write_text

        atomic_write_text(self.path, "".join(self._line(d, v) for d, v in scores.items()))

    def _line(self, digest: str, score: float | tuple[float, ...]) -> str:
        text = ",".join(repr(float(v)) for v in score) if isinstance(score, tuple) else repr(float(score))
        return f"{digest} {text} {line_check(self.key, digest, text)}\n"

    def _parse(self, raw: bytes) -> tuple[str, float | tuple[float, ...]] | None:
        """(file digest, score or scores) of one cache line, or None when it fails its check."""
        try:
            m = _LINE.match(raw.decode("ascii"))
        except UnicodeDecodeError:
            return None
        if m is None or line_check(self.key, m.group(1), m.group(2)) != m.group(3):
            return None
        try:
            values = tuple(float(v) for v in m.group(2).split(","))
        except ValueError:
            return None
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):  # scores are probabilities
            return None
        return m.group(1), values[0] if len(values) == 1 and "," not in m.group(2) else values

    def add(self, items: list[tuple[str, float | tuple[float, ...]]]) -> None:
        """Append (digest, score) pairs and flush them to the file."""
        if not items:
            return
        if self._handle is None:
            self._open()
        self._handle.write("".join(self._line(d, score) for d, score in items))
        self._handle.flush()

    def _open(self) -> None:
        from fairaudit._util.atomic import atomic_write_text
        from fairaudit._util.safe_paths import open_nofollow, own_folder, regular_or_missing

        if self._own:
            own_folder(self.folder)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / f"{self.key}.json"
        if not regular_or_missing(meta):  # written to a temporary name, renamed: no link followed
            atomic_write_text(meta, json.dumps(self.info, indent=2, default=str) + "\n")
        regular_or_missing(self.path)
        # O_NOFOLLOW: a link planted at <key>.scores since the check above fails (ELOOP)
        # instead of making the cache append to the file it points to.
        try:
            fd = open_nofollow(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(
                f"cannot open the prediction cache for writing ({exc.strerror}).",
                file=str(self.path),
                hint=f"Remove it (it is recreated), or pass another {arg('cache_dir')}.",
                argument="cache_dir",
            ) from None
        cut = _drop_cut_line(fd)
        self._handle = os.fdopen(fd, "a", encoding="ascii")
        if cut:  # a long unfinished last line (not one cut by a crash): start a fresh line
            self._handle.write("\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _drop_cut_line(fd: int, tail: int = 4096) -> bool:
    """Cut off a last line a crash left unfinished, so that only the end of the file may
    hold one (load() ignores it silently; every other failing line is warned about).
    True when the unfinished part is too long to be a cache line: the caller starts a
    new line after it instead."""
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    start = max(0, size - tail)
    chunk = os.pread(fd, size - start, start)
    if chunk.endswith(b"\n"):
        return False
    end = chunk.rfind(b"\n")
    if end < 0 and start > 0:
        return True
    os.ftruncate(fd, start + end + 1)
    return False
