"""A prediction cache so that an interrupted model run can resume (`audit --resume`).

Folder layout (default OUT_DIR/.fairaudit-cache/, or --cache-dir), one pair per model:

    <key>.json     which model the scores belong to (name, sha256, task, device, spec)
    <key>.scores   append-only lines "<sha256 of the file's bytes> <score>"

`key` hashes the model's sha256 together with everything else that changes its output
(task, output kind, preprocessing spec, device), so scores of another model or another
preprocessing are never reused. Lines are appended after every batch and flushed, so an
interrupted run keeps what it scored; a line cut short by a crash is ignored on reading.
The cache holds content hashes and scores only: no path, no DICOM id, no patient
identifier. Scores are written with repr(), so a resumed run audits the exact numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from fairaudit._hashing import file_sha256

log = logging.getLogger(__name__)

CACHE_DIR = ".fairaudit-cache"
_LINE = re.compile(r"^([0-9a-f]{64}) (\S+)$")


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes (a DICOM file is read once more, from the page cache)."""
    return file_sha256(path)


def model_key(info: dict[str, Any]) -> str:
    """The cache key of a predictor's outputs (see the module doc)."""
    parts = {k: info.get(k) for k in ("sha256", "task", "output", "device", "preprocessing")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class PredictionCache:
    """content sha256 -> score for one model; `load()` reads, `add()` appends and flushes."""

    def __init__(self, folder: Path, info: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.key = model_key(info)
        self.info = {k: info.get(k) for k in ("name", "sha256", "task", "output", "device", "preprocessing")}
        self.path = self.folder / f"{self.key}.scores"
        self._handle: Any = None

    def load(self) -> dict[str, float]:
        """Every score cached for this model (an unreadable or cut-short line is skipped)."""
        out: dict[str, float] = {}
        if not self.path.is_file():
            return out
        with open(self.path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                m = _LINE.match(line.rstrip("\n"))
                if m is None:
                    continue
                try:
                    out[m.group(1)] = float(m.group(2))
                except ValueError:
                    continue
        return out

    def add(self, items: list[tuple[str, float]]) -> None:
        """Append (digest, score) pairs and flush them to the file."""
        if not items:
            return
        if self._handle is None:
            self._open()
        self._handle.write("".join(f"{d} {score!r}\n" for d, score in items))
        self._handle.flush()

    def _open(self) -> None:
        from fairaudit.report.writers import atomic_write_text

        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / f"{self.key}.json"
        if not meta.exists():
            atomic_write_text(meta, json.dumps(self.info, indent=2, default=str) + "\n")
        cut = self.path.is_file() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
        self._handle = open(self.path, "a", encoding="ascii")  # noqa: SIM115 - closed in close()
        if cut:  # a crash cut the last line short: start on a fresh line
            self._handle.write("\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"
