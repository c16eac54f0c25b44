"""pred_masks/index.csv (fairaudit.workflows.mask_index): written, read back, matched by id;
hostile or malformed indexes refused with the row and column; the no-match error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fairaudit._util.privacy import IdHasher
from fairaudit.errors import InputError
from fairaudit.workflows.mask_index import match_pred_masks, read_mask_index, write_mask_index


def _sha(salt: str, value: str) -> str:
    return hashlib.sha256(salt.encode() + b"\x00" + value.encode()).hexdigest()[:16]


def _written(folder: Path, ids: list[str], hasher: IdHasher) -> dict[str, Path]:
    """Masks named as a model run names them (a plain stem per id), and the index."""
    files = {}
    for k, i in enumerate(ids):
        name = f"m{k}.png"
        (folder / name).write_bytes(b"x")
        files[i] = folder / name
    write_mask_index(folder, [(hasher(i), f"pred_masks/{p.name}") for i, p in files.items()], hasher)
    return files


def test_pseudonyms_match_with_the_same_salt_only(tmp_path: Path) -> None:
    ids = ["1.2.3", "=cmd|' /C calc'!A0", "sub/dir/case.dcm"]
    files = _written(tmp_path, ids, IdHasher("s1"))
    index = read_mask_index(tmp_path)
    assert index is not None and index.naming == "pseudonym"
    assert set(index.files) == {_sha("s1", i) for i in ids}  # hashed as hashlib does
    found = {p.stem: p for p in files.values()}
    matched = match_pred_masks(tmp_path, found, ids, ids, salt="s1", id_column="uid", table="demo.csv")
    assert matched == files
    with pytest.raises(InputError) as err:
        match_pred_masks(tmp_path, found, ids, ids, salt="other", id_column="uid", table="demo.csv")
    text = str(err.value)
    assert "salted pseudonym" in text and f"'{_sha('other', ids[0])}'" in text
    assert not any(i in text for i in ids)  # no id in clear in the message


def test_clear_ids_of_keep_ids_round_trip_even_formula_like_ones(tmp_path: Path) -> None:
    ids = ["=1+2", "a" * 240, "plain"]
    files = _written(tmp_path, ids, IdHasher(keep_ids=True))
    index = read_mask_index(tmp_path)
    assert index is not None and index.naming == "id" and set(index.files) == set(ids)
    # Any salt (or none): clear ids are matched as they are.
    matched = match_pred_masks(tmp_path, {}, ids, ids[:1], salt=None, id_column="uid", table="demo.csv")
    assert matched == files


@pytest.mark.parametrize(
    ("row", "column"),
    [("x,../secret.png,pseudonym", "mask"), ("x,a/b.png,pseudonym", "mask"), ("x,a.png,other", "naming")],
)
def test_a_hostile_or_malformed_index_is_refused_with_row_and_column(
    tmp_path: Path, row: str, column: str
) -> None:
    (tmp_path / "index.csv").write_text(f"id,mask,naming\ny,ok.png,pseudonym\n{row}\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_mask_index(tmp_path)
    assert err.value.row == 3 and err.value.column == column


def test_missing_columns_and_no_index(tmp_path: Path) -> None:
    assert read_mask_index(tmp_path) is None
    (tmp_path / "index.csv").write_text("id,file\n", encoding="utf-8")
    with pytest.raises(InputError, match="mask, naming"):
        read_mask_index(tmp_path)


def test_without_an_index_the_error_names_the_expected_naming_and_an_example(tmp_path: Path) -> None:
    found = {"other": tmp_path / "other.png"}
    with pytest.raises(InputError) as err:
        match_pred_masks(tmp_path, found, ["a", "b"], ["a"], salt=None, id_column="uid", table="demo.csv")
    text = str(err.value)
    assert "'uid' column of demo.csv" in text and "e.g. 'other.png'" in text
    # Some ids without a predicted mask: their cases are left out later, no error here.
    found["a"] = tmp_path / "a.png"
    assert match_pred_masks(
        tmp_path, found, ["a", "b"], ["a", "b"], salt=None, id_column="uid", table="d"
    ) == {"a": tmp_path / "a.png"}
