"""manifest.csv's rows spooled to disk as the join makes them, not held as text.

On 50,000 files manifest.csv is about 10 MB of text (four rows a file: the predictions,
demographics, labels and DICOM files), held from the join to the end of the audit; the
spool keeps it in an unnamed temporary file (removed by the system however the run ends)
and copies it to OUT_DIR/manifest.csv atomically at the end, hashing it on the way.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from fairaudit._util.atomic import atomic_path
from fairaudit._util.sanitize import write_csv

_CHUNK = 1 << 20


class ManifestSpool:
    """Append CSV parts (the first with its header); read back the text, its sha256, or save it."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self._parts = 0

    def append(self, frame: pd.DataFrame, *, header: bool | None = None) -> None:
        """Write `frame`'s rows as CSV; its header only if it is the first part (or `header`).

        Cells a spreadsheet would run as formulas (an id or a file name starting with "=")
        are neutralised by fairaudit._util.sanitize (docs/reports.md); `row` stays a number.
        """
        write_csv(frame, self._file, header=self._parts == 0 if header is None else header, numeric=("row",))
        self._parts += 1

    def _chunks(self) -> Iterator[str]:
        self._file.flush()
        self._file.seek(0)
        while chunk := self._file.read(_CHUNK):
            yield chunk
        self._file.seek(0, 2)

    def text(self) -> str:
        """The whole text (tests, small manifests)."""
        return "".join(self._chunks())

    def sha256(self) -> str:
        """sha256 of the text's UTF-8 bytes: the same as fairaudit.report.provenance.text_sha256."""
        digest = hashlib.sha256()
        for chunk in self._chunks():
            digest.update(chunk.encode("utf-8"))
        return digest.hexdigest()

    def save(self, path: Path | str) -> Path:
        """Copy the text to `path` atomically (temporary file, then rename)."""
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
            self._file.flush()
            self._file.seek(0)
            shutil.copyfileobj(self._file, out, _CHUNK)
            self._file.seek(0, 2)
        return Path(path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ManifestSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
