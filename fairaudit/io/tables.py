"""Reading the user's CSV files: one place that validates and names file, column and row.

Row numbers follow spreadsheets: the header is row 1, the first record row 2.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.errors import InputError

ID_CANDIDATES: tuple[str, ...] = ("sop_instance_uid", "study_instance_uid", "patient_id", "path")
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})


@dataclass
class Table:
    """A CSV read as text, with the spreadsheet row number of each record."""

    path: Path
    frame: pd.DataFrame  # every cell a str, stripped (a model run's scores: floats); original column names
    rows: pd.Series  # spreadsheet row number per record
    label: str | None = None  # how messages name it, when not by its file name
    header: list[str] | None = None  # every column of the file, when `frame` keeps only some
    # Where the records are when `frame` holds none (only the columns): called with the
    # columns wanted, it yields (cells, spreadsheet rows) a chunk at a time, like iter_chunks.
    reader: Callable[[list[str]], Iterator[tuple[pd.DataFrame, pd.Series]]] | None = None
    size: int | None = None  # the records' count when `reader` has them and it is known

    def count(self) -> int:
        """How many records (those `frame` holds, else `size`). (Not __len__: a Table is
        truthy whatever its size; `lab or pred` relies on it.)"""
        return len(self.frame) if self.reader is None or self.size is None else self.size

    def chunks(self, keep: list[str]) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
        """The records' `keep` columns (actual names, as `column` gives them), a chunk of
        rows at a time, with their spreadsheet row numbers."""
        if self.reader is not None:
            yield from self.reader(keep)
            return
        frame = self.frame[keep]
        for a in range(0, len(frame), _CHUNK_ROWS):
            part = frame.iloc[a : a + _CHUNK_ROWS].reset_index(drop=True)
            yield part, pd.Series(self.rows.iloc[a : a + _CHUNK_ROWS].to_numpy(), index=part.index)

    @property
    def columns(self) -> list[str]:
        """The file's columns (what messages list), whether or not `frame` kept them."""
        return list(self.frame.columns) if self.header is None else self.header

    @property
    def name(self) -> str:
        return self.label or self.path.name

    def column(self, name: str, *, option: str | None = None) -> str:
        """The actual column called `name` (exact, else the one case-insensitive match)."""
        if name in self.frame.columns:
            return name
        folded = [c for c in self.frame.columns if c.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        cols = ", ".join(repr(c) for c in self.columns)
        hint = f"Pass {option} with one of the columns listed." if option else ""
        raise InputError(
            f"no column '{name}' (columns: {cols}).", file=str(self.path), column=name, hint=hint
        )

    def has(self, name: str) -> bool:
        return name in self.frame.columns or any(c.lower() == name.lower() for c in self.frame.columns)


def _sniff_delimiter(path: Path) -> str:
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            sample = fh.read(65536)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"is not UTF-8 text ({exc.reason}).", file=str(path), hint="Save it as UTF-8 CSV."
        ) from None
    if not sample.strip():
        raise InputError("the file is empty; it needs a header row and at least one record.", file=str(path))
    try:
        return csv.Sniffer().sniff(sample.splitlines()[0] if sample else sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


_CHUNK_ROWS = 5_000


def _options(path: Path) -> dict[str, object]:
    """read_csv's options for `path` (checked to exist; its delimiter sniffed)."""
    if not path.is_file():
        raise InputError("file not found.", file=str(path), hint="Check the path.")
    return {
        "sep": _sniff_delimiter(path),
        "dtype": str,
        "keep_default_na": False,
        "na_filter": False,
        "encoding": "utf-8-sig",
        "skipinitialspace": True,
        "skip_blank_lines": False,
    }


@contextmanager
def _csv_errors(path: Path) -> Iterator[None]:
    """pandas' reading errors as InputErrors naming the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise InputError(
            f"is not UTF-8 text ({exc.reason}).", file=str(path), hint="Save it as UTF-8 CSV."
        ) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot be parsed as CSV: {exc}", file=str(path)) from exc


def read_header(path: Path | str) -> Table:
    """The CSV's columns alone, as a Table without records: enough to choose the join key
    (fairaudit.io.cohort) before reading only the columns that will be used."""
    path = Path(path)
    options = _options(path)
    with _csv_errors(path):
        header = _header(pd.read_csv(path, nrows=0, **options), path)
    frame = pd.DataFrame(columns=header)
    return Table(
        path=path,
        frame=frame,
        rows=pd.Series([], index=frame.index, dtype=int),
        reader=_FileReader(path),
    )


class _FileReader:
    """A CSV's records for Table.chunks. A join reads a file twice (to match, then to write
    the manifest): a file whose size or modification time changed in between is an error,
    not a manifest that mixes two versions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None

    def __call__(self, keep: list[str]) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise InputError(f"cannot be read ({exc.strerror}).", file=str(self.path)) from None
        stamp = (st.st_size, st.st_mtime_ns)
        if self.stamp is None:
            self.stamp = stamp
        elif stamp != self.stamp:
            raise InputError(
                "changed while being read (its size or modification time differs from the first read).",
                file=str(self.path),
                hint="Audit a copy that nothing writes to.",
            )
        return iter_chunks(self.path, keep)


def iter_chunks(
    path: Path | str, keep: Iterable[str] | None = None
) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """A CSV's records a chunk of rows at a time: (cells as stripped text, spreadsheet row
    numbers), blank lines skipped (they count as rows, as in a spreadsheet).

    `keep`: the only columns the caller may use (case-insensitive); each chunk loses the
    others once its blank rows are told from the whole line, so on a large cohort the unused
    cells never all exist as Python strings at once.
    """
    path = Path(path)
    options = _options(path)
    wanted = None if keep is None else {k.lower() for k in keep}
    header: list[str] | None = None
    start = 2
    with _csv_errors(path):
        for chunk in pd.read_csv(path, chunksize=_CHUNK_ROWS, **options):
            if header is None:
                header = _header(chunk, path)
            chunk.columns = header
            chunk = chunk.apply(lambda col: col.str.strip()) if len(chunk) else chunk
            blank = (chunk == "").all(axis=1).to_numpy() if header else np.zeros(len(chunk), dtype=bool)
            rows = np.arange(start, start + len(chunk))
            start += len(chunk)
            if wanted is not None:
                chunk = chunk[[c for c in header if c.lower() in wanted]]
            if blank.any():
                chunk, rows = chunk[~blank], rows[~blank]
            if len(chunk):
                chunk = chunk.reset_index(drop=True)
                yield chunk, pd.Series(rows, index=chunk.index)


def read_table(path: Path | str, keep: Iterable[str] | None = None) -> Table:
    """Read a CSV (comma, semicolon, tab; optional byte-order mark) as text.

    `keep`: the only columns the caller may use (case-insensitive), as in `iter_chunks`.
    Messages still list every column.
    """
    path = Path(path)
    header = read_header(path).columns
    parts = list(iter_chunks(path, keep))
    if parts:
        frame = pd.concat([f for f, _ in parts], ignore_index=True) if len(parts) > 1 else parts[0][0]
        rows = pd.concat([r for _, r in parts], ignore_index=True) if len(parts) > 1 else parts[0][1]
    else:
        wanted = None if keep is None else {k.lower() for k in keep}
        frame = pd.DataFrame(columns=[c for c in header if wanted is None or c.lower() in wanted])
        rows = pd.Series([], dtype=int)
    del parts
    if len(frame) == 0:
        raise InputError("has a header but no records.", file=str(path))
    return Table(path=path, frame=frame, rows=rows, header=None if keep is None else header)


def _header(chunk: pd.DataFrame, path: Path) -> list[str]:
    """The stripped column names; a name repeated once stripped is an error."""
    names = [str(c).strip() for c in chunk.columns]
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise InputError(f"the header repeats column(s) {', '.join(dupes)}.", file=str(path))
    return names


def is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING_TOKENS


def parse_binary(table: Table, column: str, what: str) -> pd.Series:
    """0/1 values as floats (NaN where missing); anything else is an InputError."""
    out = []
    for value, row in zip(table.frame[column], table.rows, strict=True):
        if is_missing(value):
            out.append(math.nan)
            continue
        try:
            num = float(value)
        except ValueError:
            raise InputError(
                f"value '{value}' is not a number; {what} must be 0 or 1.",
                file=table.name,
                column=column,
                row=int(row),
            ) from None
        if num not in (0.0, 1.0):
            raise InputError(
                f"value '{value}' is not a binary {what} (0 or 1).",
                file=table.name,
                column=column,
                row=int(row),
                hint="Binarize it first (for example finding present = 1).",
            )
        out.append(num)
    return pd.Series(out, index=table.frame.index, dtype=float)


def missing_cells(values: pd.Series) -> pd.Series:
    """True where a cell is missing: a missing token in text, NaN in a column of numbers
    (a model run's scores)."""
    if values.dtype.kind == "f":
        return values.isna()
    return values.map(is_missing)


def parse_score(table: Table, column: str) -> pd.Series:
    """Scores in [0, 1] as floats; NaN where missing (excluded later). inf is out of range."""
    missing = missing_cells(table.frame[column])
    values = pd.to_numeric(table.frame[column].where(~missing), errors="coerce")
    bad = values.isna() & ~missing
    if bad.any():
        i = bad.idxmax()
        raise InputError(
            f"value '{table.frame[column][i]}' is not a number.",
            file=table.name,
            column=column,
            row=int(table.rows[i]),
            hint="Scores must be probabilities in [0, 1].",
        )
    finite = values[values.notna()]
    out_of_range = (finite < 0) | (finite > 1)
    if out_of_range.any():
        i = out_of_range.idxmax()
        raise InputError(
            f"score {table.frame[column][i]} is outside [0, 1].",
            file=table.name,
            column=column,
            row=int(table.rows[i]),
            hint="Pass probabilities (apply a sigmoid or softmax to logits first).",
        )
    return values.astype(float)


def detect_id_column(
    tables: list[Table], requested: str | None, candidates: tuple[str, ...] = ID_CANDIDATES
) -> str | None:
    """The join key shared by all tables: `requested`, else the first of `candidates`."""
    if requested is not None:
        for t in tables:
            t.column(requested, option="--id-column")
        return requested
    for cand in candidates:
        if all(t.has(cand) for t in tables):
            return cand
    if len(tables) == 1:
        return None
    listing = "; ".join(f"{t.name}: {', '.join(t.columns)}" for t in tables)
    raise InputError(
        f"no id column shared by all files (tried {', '.join(candidates)}). Columns are {listing}.",
        hint="Pass --id-column NAME naming a column present in every file.",
    )
