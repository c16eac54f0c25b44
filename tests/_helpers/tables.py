"""CSV files written by the tests (the csv module's quoting, its "\\r\\n" line ends)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path


def write_csv(
    path: Path,
    header: Sequence[object],
    rows: Iterable[Sequence[object]],
    *,
    sep: str = ",",
    bom: bool = False,
) -> Path:
    """`header`, then `rows`, to `path` (UTF-8, with a byte-order mark if `bom`)."""
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=sep)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_records(path: Path, records: Sequence[dict], *, sep: str = ",", bom: bool = False) -> Path:
    """Dicts as rows; the first one's keys are the header (a key another lacks is an empty cell)."""
    header = list(records[0])
    return write_csv(path, header, ([r.get(k, "") for k in header] for r in records), sep=sep, bom=bom)
