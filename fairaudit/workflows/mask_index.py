"""pred_masks/index.csv: predicted masks a model run wrote, audited again with --pred-masks.

Why an index and not the input's own relative path: ids and paths are identifiers, and
outputs name them by their salted pseudonym unless --keep-ids (docs/threat-model.md,
"Identifiers in file names"). A model run therefore writes each mask under a stable name,
the pseudonym of its id (`<pseudonym>.png`; the id itself with --keep-ids, shortened with
a digest where it cannot be a file name), and pred_masks/index.csv maps the id as outputs
show it to that file:

    id,mask,naming
    3fa2c1d09b7e44a1,3fa2c1d09b7e44a1.png,pseudonym

A later audit given `--pred-masks OUT/pred_masks` reads the index and finds the mask of a
demographics id by the id's pseudonym under its own salt: the same `--salt` (or
FAIRAUDIT_SALT) as the run that wrote them, since without one each run draws a random salt
and its pseudonyms cannot be linked to anything (by design). With `naming = id` (--keep-ids)
the id is matched as it is. docs/segmentation.md, "Predicted masks audited again".
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fairaudit._util.atomic import atomic_path
from fairaudit._util.privacy import IdHasher
from fairaudit.errors import InputError, arg

log = logging.getLogger(__name__)

INDEX_FILE = "index.csv"
PSEUDONYM = "pseudonym"
CLEAR = "id"
_COLUMNS = ("id", "mask", "naming")
# write_csv puts a "'" before a cell that a spreadsheet would read as a formula.
_FORMULA_START = tuple("=+-@\t\r\n＝＋－＠")


def write_mask_index(mask_dir: Path, entries: Iterable[tuple[str, str]], hasher: IdHasher) -> Path:
    """Write mask_dir/index.csv: one (id as outputs show it, file name in mask_dir) per mask."""
    from fairaudit._util.sanitize import write_csv

    naming = CLEAR if hasher.keep_ids else PSEUDONYM
    rows = [(shown, Path(name).name, naming) for shown, name in entries]
    path = mask_dir / INDEX_FILE
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        write_csv(pd.DataFrame(rows, columns=list(_COLUMNS)), fh)
    return path


@dataclass(frozen=True)
class PredMaskIndex:
    """A parsed index.csv: how ids are written, and each written id's mask file."""

    naming: str
    files: dict[str, Path]


def _unquote(cell: str) -> str:
    """A cell as written before write_csv protected it from spreadsheets."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA_START) else cell


def read_mask_index(folder: Path) -> PredMaskIndex | None:
    """folder/index.csv when there is one (None otherwise). A malformed index is an input
    error naming the row and column; a mask it names must be a file directly in `folder`
    (no path, no link out): the index cannot point the audit at another file."""
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        return None
    name = str(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"a predicted-mask index needs the columns {', '.join(_COLUMNS)}; missing: {', '.join(missing)}.",
                file=name,
                hint=f"Pass {arg('pred_masks')} the pred_masks/ folder a model run wrote, unchanged.",
                argument="pred_masks",
            )
        files: dict[str, Path] = {}
        namings: set[str] = set()
        root = Path(folder).resolve()
        for row_number, row in enumerate(reader, start=2):
            naming = (row.get("naming") or "").strip()
            if naming not in (PSEUDONYM, CLEAR):
                raise InputError(
                    f"naming must be '{PSEUDONYM}' or '{CLEAR}'.", file=name, row=row_number, column="naming"
                )
            mask = _unquote(row.get("mask") or "")
            target = root / mask
            if (
                not mask
                or "/" in mask
                or "\\" in mask
                or mask in (".", "..")
                or target.resolve().parent != root
            ):
                raise InputError(
                    "mask must be the name of a file in the index's own folder.",
                    file=name,
                    row=row_number,
                    column="mask",
                )
            namings.add(naming)
            files[_unquote(row.get("id") or "")] = target
    if len(namings) > 1:
        raise InputError(
            f"the index mixes '{PSEUDONYM}' and '{CLEAR}' naming.",
            file=name,
            column="naming",
            argument="pred_masks",
        )
    return PredMaskIndex(namings.pop() if namings else PSEUDONYM, files)


def match_pred_masks(
    folder: Path,
    found: Mapping[str, Path],
    ids: Iterable[str],
    wanted: Iterable[str],
    *,
    salt: str | None,
    id_column: str,
    table: str,
) -> dict[str, Path]:
    """The predicted mask of each id of the demographics (`ids`), from the folder's files
    (`found`: name without suffix -> file) or, where index.csv is present, through it.

    `wanted`: the ids that have a ground-truth mask. When none of them has a predicted
    mask, the input error says which naming was expected and shows one example, before
    any mask is read."""
    ids = [str(i) for i in ids]
    index = read_mask_index(folder)
    if index is None:
        matched = {k: found[k] for k in ids if k in found}
        expected = (
            f"files named by the values of the '{id_column}' column of {table} (<id>.png, .npy or .nii.gz)"
        )
        example = next(iter(sorted(p.name for p in found.values())), None)
        shown = f"; the folder holds e.g. '{example}'" if example else ""
        hint = f"Name the predicted masks as the ground-truth masks are named, or pass {arg('id_column')}."
    else:
        hasher = IdHasher(salt) if index.naming == PSEUDONYM else IdHasher(keep_ids=True)
        written = {hasher(k): k for k in ids}
        matched = {written[w]: f for w, f in index.files.items() if w in written}
        expected = (
            f"the salted pseudonym of each id ({INDEX_FILE} maps pseudonyms to files)"
            if index.naming == PSEUDONYM
            else f"each id as {INDEX_FILE} lists it ({arg('keep_ids')})"
        )
        first = next(iter(ids), None)
        shown = (
            f"; with this run's salt the first row's mask would be listed as '{hasher(first)}'"
            if first is not None and index.naming == PSEUDONYM
            else ""
        )
        hint = (
            f"Pass the {arg('salt')} (or FAIRAUDIT_SALT) of the run that wrote these masks: without one, "
            "each run draws a random salt and its pseudonyms match nothing."
            if index.naming == PSEUDONYM
            else f"Audit them with the demographics (and {arg('id_column')}) of the run that wrote them."
        )
    wanted = [k for k in wanted if k]
    if wanted and not any(k in matched for k in wanted):
        raise InputError(
            f"no case can be audited: no predicted mask in {arg('pred_masks')} belongs to an id with a "
            f"ground-truth mask ({len(found)} mask files). Expected naming: {expected}{shown}.",
            file=str(folder),
            hint=hint,
            argument="pred_masks",
        )
    missing = sum(1 for k in wanted if k not in matched)
    if missing:
        log.warning(
            "%d ids with a ground-truth mask have no predicted mask in %s (expected naming: %s)",
            missing,
            arg("pred_masks"),
            expected,
        )
    return matched
