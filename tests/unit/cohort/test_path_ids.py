"""File paths as join keys (fairaudit.cohort.dicom_files.PathIds; docs/images.md): a file's
path relative to the folder matches an id written with or without its extension."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fairaudit.cohort.dicom_files import PathIds, is_path_id
from fairaudit.errors import InputError
from fairaudit.io.tables import Table


def _table(name: str, column: str, ids: list[str]) -> Table:
    frame = pd.DataFrame({column: ids}, dtype=str)
    return Table(path=Path(name), frame=frame, rows=pd.Series(range(2, len(ids) + 2)))


def test_with_or_without_the_extension() -> None:
    ids = PathIds.from_tables(
        [_table("d.csv", "path", ["a/0001", "a/0002.png", "b.v2/0003", "0004.png", "0004"])], "path"
    )
    got = ids(["a/0001.png", "a/0002.png", "b.v2/0003.jpg", "0004.png", "a/9999.png", ".hidden", "b.v2/x"])
    assert got == [
        "a/0001",  # written without the extension
        "a/0002.png",  # with it
        "b.v2/0003",  # a dot in a folder name is not an extension
        "0004.png",  # both forms written: the path itself first
        "a/9999.png",  # no match: the path, which the join then reports
        ".hidden",
        "b.v2/x",
    ]


def test_the_column_may_have_any_name() -> None:
    """ChestX-ray14's `Image Index` (00000001_000.png); DICOM ids are not paths."""
    ids = PathIds.from_tables([_table("Data_Entry.csv", "Image Index", ["00000001_000.png"])], "Image Index")
    assert ids(["00000001_000.png"]) == ["00000001_000.png"]
    assert is_path_id("Image Index") and is_path_id("path") and is_path_id("PATH")
    assert not is_path_id("sop_instance_uid") and not is_path_id(None)


def test_files_must_write_paths_alike() -> None:
    with pytest.raises(InputError, match=r"with the extension in labels.csv .* without it in demo.csv"):
        PathIds.from_tables(
            [
                _table("labels.csv", "path", ["x/1.png", "x/2.png"]),
                _table("demo.csv", "path", ["x/1", "x/2"]),
            ],
            "path",
        )
    empty = PathIds.from_tables([], "path")
    assert empty(["x.png"]) == ["x.png"]
