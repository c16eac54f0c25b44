"""Reading the user's CSV files: one place that validates and names file, column and row.

Row numbers follow spreadsheets: the header is row 1, the first record row 2.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit._util.regular import check_regular_file
from fairaudit.errors import InputError, arg
from fairaudit.io.csv_fields import check_field_counts

ID_CANDIDATES: tuple[str, ...] = ("sop_instance_uid", "study_instance_uid", "patient_id", "path")
#: Join-key column -> the DICOM tag that holds it (header keywords, as fairaudit.io.dicom
#: reads them). The one map every DICOM join uses: audit, segmentation, model runs,
#: normalize, augment-check and training.
DICOM_ID_TAGS: dict[str, str] = {
    "sop_instance_uid": "SOPInstanceUID",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "patient_id": "PatientID",
}
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
    # Another name for one of its columns: the join key of `--id-column predictions=img,
    # demographics=sop_uid`, under the predictions' name in every file (fairaudit.cohort.join).
    aliases: dict[str, str] = field(default_factory=dict)

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

    def column(self, name: str, *, argument: str | None = None, or_file: str | None = None) -> str:
        """The actual column called `name` (exact, else the one case-insensitive match).

        `argument` named the column (the hint asks for it again, fairaudit.errors.arg);
        `or_file`, an argument whose file may hold the column instead."""
        found = self._find(name)
        if found is not None:
            return found
        cols = ", ".join(repr(c) for c in self.columns)
        hint = ""
        if argument:
            alternative = f" (or {arg(or_file)} FILE)" if or_file else ""
            hint = f"Pass {arg(argument)}{alternative} with one of the columns listed."
        raise InputError(
            f"no column '{name}' (columns: {cols}).",
            file=str(self.path),
            column=name,
            hint=hint,
            argument=argument,
        )

    def has(self, name: str) -> bool:
        return self._find(name) is not None

    def _find(self, name: str) -> str | None:
        """`name` itself, else the one column equal to it ignoring case, else the one equal
        ignoring case and `_`, `-` and spaces (DICOM's `SOPInstanceUID` is `sop_instance_uid`,
        `PatientID` is `patient_id`); None when absent or ambiguous. An alias names its column."""
        if name in self.aliases:
            return self.aliases[name]
        if name in self.frame.columns:
            return name
        for fold in (str.lower, squashed):
            matches = [c for c in self.frame.columns if fold(c) == fold(name)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                return None
        return None


def squashed(name: str) -> str:
    """A column name without case, `_`, `-` or spaces: how spellings of one id are compared."""
    return "".join(ch for ch in name.lower() if ch not in "_- ")


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
    """read_csv's options for `path` (checked to be a regular file; its delimiter sniffed)."""
    # A FIFO, folder or /dev/zero is named as what it is, before anything opens it (a FIFO
    # would block, /dev/zero never end; docs/threat-model.md).
    check_regular_file(path, what="a CSV file")
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


def read_header(path: Path | str | Table) -> Table:
    """The CSV's columns alone, as a Table without records: enough to choose the join key
    (fairaudit.cohort.join) before reading only the columns that will be used. A Table
    (a DataFrame given to the Python API, `table_from_frame`) is its own header."""
    if isinstance(path, Table):
        return path
    path = Path(path)
    options = _options(path)
    header = _file_header(path, options)
    check_field_counts(path, str(options["sep"]), len(header))
    frame = _empty_frame(header)
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

    `keep`: the only columns the caller may use (case-insensitive); the others are dropped
    once each chunk's blank rows are told from the whole line. In a file with many columns
    the audit does not use, only the used ones are parsed (pandas usecols) and the blank rows
    are told by the csv module, a record at a time: 20,000 columns cost what the used
    columns cost (docs/reports.md, "What a value may add to a report").
    """
    path = Path(path)
    options = _options(path)
    wanted = None if keep is None else {k.lower() for k in keep}
    header: list[str] | None = None
    blank_records: Generator[bool, None, None] | None = None
    if wanted:
        every = _file_header(path, options)
        used = [i for i, c in enumerate(every) if c.lower() in wanted]
        if used and len(every) - len(used) >= _USECOLS_MIN_UNUSED:
            options["usecols"] = used
            header = [every[i] for i in used]
            blank_records = _blank_records(path, str(options["sep"]))
    start = 2
    with _csv_errors(path), contextlib.ExitStack() as stack:
        if blank_records is not None:
            stack.callback(blank_records.close)  # its file, when the caller stops early
        for chunk in pd.read_csv(path, chunksize=_CHUNK_ROWS, **options):
            if header is None:
                header = _header(chunk, path)
            chunk.columns = header
            chunk = chunk.apply(lambda col: col.str.strip()) if len(chunk) else chunk
            if blank_records is not None:
                told = list(itertools.islice(blank_records, len(chunk)))
                blank = np.array(told + [False] * (len(chunk) - len(told)), dtype=bool)
            elif header:
                blank = (chunk == "").all(axis=1).to_numpy()
            else:
                blank = np.zeros(len(chunk), dtype=bool)
            rows = np.arange(start, start + len(chunk))
            start += len(chunk)
            if wanted is not None:
                chunk = chunk[[c for c in header if c.lower() in wanted]]
            if blank.any():
                chunk, rows = chunk[~blank], rows[~blank]
            if len(chunk):
                chunk = chunk.reset_index(drop=True)
                yield chunk, pd.Series(rows, index=chunk.index)


#: Unused columns from which iter_chunks parses only the used ones (below, the whole line).
_USECOLS_MIN_UNUSED = 32


def _blank_records(path: Path, sep: str) -> Generator[bool, None, None]:
    """Per record after the header, whether every cell is blank (the rows pandas would give
    as all empty), read with the csv module beside pandas' read of the used columns."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a huge cell is pandas' to judge
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep, skipinitialspace=True)  # as pandas reads it
        next(reader, None)
        for record in reader:
            yield not any(cell.strip() for cell in record)


def read_table(path: Path | str | Table, keep: Iterable[str] | None = None) -> Table:
    """Read a CSV (comma, semicolon, tab; optional byte-order mark) as text.

    `keep`: the only columns the caller may use (case-insensitive), as in `iter_chunks`.
    Messages still list every column. A Table (`table_from_frame`) is returned as it is.
    """
    if isinstance(path, Table):
        return path
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


def _file_header(path: Path, options: dict[str, object]) -> list[str]:
    """The header's stripped names, as pandas names them ("Unnamed: 3" for an empty one),
    read with the csv module: pandas builds an empty column per name even for nrows=0,
    seconds on 100,000 columns (docs/reports.md). A header the csv module cannot read as
    pandas would (huge, empty, or repeating a name, which pandas renames) is left to pandas."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            first = next(csv.reader(fh, delimiter=str(options["sep"]), skipinitialspace=True), [])
    except (csv.Error, UnicodeDecodeError, OSError):
        first = []
    names = [c if c else f"Unnamed: {i}" for i, c in enumerate(first)]
    if not first or not any(first) or len(set(names)) != len(names):
        with _csv_errors(path):
            return _header(pd.read_csv(path, nrows=0, **options), path)
    return _header(names, path)


def _empty_frame(columns: list[str]) -> pd.DataFrame:
    """A frame of no rows and these columns, as one block: DataFrame(columns=...) makes a
    column at a time (seconds on 100,000 columns)."""
    return pd.DataFrame(np.empty((0, len(columns)), dtype=object), columns=columns)


def _header(chunk: pd.DataFrame | list[str], path: Path) -> list[str]:
    """The stripped column names; a name repeated once stripped is an error."""
    names = [str(c).strip() for c in (chunk.columns if isinstance(chunk, pd.DataFrame) else chunk)]
    counts = Counter(names)
    dupes = sorted(c for c, k in counts.items() if k > 1)
    if dupes:
        raise InputError(f"the header repeats column(s) {', '.join(dupes)}.", file=str(path))
    return names


def is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING_TOKENS


#: Words read as binary labels (case-insensitive), as exports spell them (issue 21).
BINARY_WORDS: dict[str, float] = {
    "yes": 1.0, "true": 1.0, "positive": 1.0,
    "no": 0.0, "false": 0.0, "negative": 0.0,
}  # fmt: skip


#: CheXpert's and MIMIC-CXR's code for an uncertain finding (docs/multilabel.md).
UNCERTAIN = -1.0


def parse_binary(
    table: Table,
    column: str,
    what: str,
    positive: str | None = None,
    others: set[str] | None = None,
    uncertain: bool = False,
) -> pd.Series:
    """0/1 values as floats (NaN where missing); yes/no, true/false and positive/negative
    (any case) are 1/0; anything else is an InputError.

    `positive` (--positive-label): that value (any case) is 1 and the one other value the
    column holds is 0 (`others` collects it across a file's chunks); a third value is an error.
    `uncertain` (a finding column of a multi-label audit): -1 is UNCERTAIN, kept as -1."""
    out = []
    others = set() if others is None else others
    for value, row in zip(table.frame[column], table.rows, strict=True):
        if is_missing(value):
            out.append(math.nan)
            continue
        if positive is not None:
            text = value.strip().lower()
            if text != positive.strip().lower():
                others.add(text)
                if len(others) > 1:
                    raise InputError(
                        f"{arg('positive_label')} '{positive}': this column holds more than two "
                        f"values ({len(others) + 1} so far), so the other value is not one label.",
                        file=table.name,
                        column=column,
                        row=int(row),
                        hint="Binarize the column first, or name the positive value of a two-valued column.",
                        argument="positive_label",
                    )
            out.append(1.0 if text == positive.strip().lower() else 0.0)
            continue
        word = BINARY_WORDS.get(value.strip().lower())
        if word is not None:
            out.append(word)
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
        if uncertain and num == UNCERTAIN:
            out.append(num)
            continue
        if num not in (0.0, 1.0):
            raise InputError(
                f"value '{value}' is not a binary {what} (0 or 1{', or -1 for uncertain' if uncertain else ''}).",
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


def parse_score(table: Table, column: str, percent: bool = False) -> pd.Series:
    """Scores in [0, 1] as floats; NaN where missing (excluded later). inf is out of range.
    `percent` (--score-scale percent): scores in [0, 100], divided by 100."""
    missing = missing_cells(table.frame[column])
    values = pd.to_numeric(table.frame[column].where(~missing), errors="coerce")
    if percent:
        values = values / 100.0
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
        looks_percent = not percent and bool(((finite >= 0) & (finite <= 100)).all())
        raise InputError(
            f"score {table.frame[column][i]} is outside [0, {100 if percent else 1}].",
            file=table.name,
            column=column,
            row=int(table.rows[i]),
            hint=f"The scores look like percentages (all within 0-100): pass {arg('score_scale')} percent."
            if looks_percent
            else "Pass probabilities (apply a sigmoid or softmax to logits first).",
        )
    return values.astype(float)


def detect_id_column(
    tables: list[Table], requested: str | None, candidates: tuple[str, ...] = ID_CANDIDATES
) -> str | None:
    """The join key shared by all tables: `requested`, else the first of `candidates`."""
    if requested is not None:
        for t in tables:
            t.column(requested, argument="id_column")
        return requested
    for cand in candidates:
        if all(t.has(cand) for t in tables):
            return cand
    if len(tables) == 1:
        return None
    listing = "; ".join(f"{t.name}: {', '.join(t.columns)}" for t in tables)
    raise InputError(
        f"no id column shared by all files (tried {', '.join(candidates)}). Columns are {listing}.",
        hint=f"Pass {arg('id_column')} NAME naming a column present in every file.",
        argument="id_column",
    )


def table_from_frame(frame: pd.DataFrame, label: str) -> Table:
    """A DataFrame as the Table its CSV would read as (the Python API takes DataFrames):
    every cell text, stripped; missing values (NaN, None, NaT) empty; all-empty rows
    skipped; rows numbered as a spreadsheet would (the header is row 1). Numbers print as
    Python's shortest round-trip text, so they parse back to the same value. Messages name
    it by `label` (e.g. "demographics (DataFrame)")."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            f"expected a pandas DataFrame or a CSV path, got {type(frame).__name__}.", file=label
        )
    names = _header([str(c) for c in frame.columns], Path(label))
    missing = frame.isna().to_numpy()
    cells = frame.astype(object).to_numpy()
    text = np.empty(cells.shape, dtype=object)
    for idx, value in np.ndenumerate(cells):
        text[idx] = "" if missing[idx] else str(value).strip()
    out = pd.DataFrame(text, columns=names)
    keep = ~(out == "").all(axis=1).to_numpy() if names else np.ones(len(out), dtype=bool)
    rows = np.arange(2, 2 + len(out))[keep]
    out = out[keep].reset_index(drop=True)
    if len(out) == 0:
        raise InputError("has no records.", file=label)
    return Table(path=Path(label), frame=out, rows=pd.Series(rows, index=out.index), label=label)
