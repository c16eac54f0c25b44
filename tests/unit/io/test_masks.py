"""Reading masks named by id: formats, labels, bad files, spacing and label flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fairaudit.errors import InputError
from fairaudit.io.masks import (
    MaskReadError,
    index_masks,
    parse_labels,
    parse_spacing,
    read_label_image,
    read_mask,
)


def _png(path, arr):
    Image.fromarray(arr).save(path)
    return path


def test_png_8_and_16_bit_palette_and_labels(tmp_path):
    arr = np.array([[0, 1, 2], [2, 0, 1]], np.uint8)
    p8 = _png(tmp_path / "a.png", arr)
    assert read_label_image(p8).tolist() == arr.tolist()
    assert read_mask(p8).tolist() == (arr > 0).tolist()
    assert read_mask(p8, (2,)).tolist() == (arr == 2).tolist()
    assert read_mask(p8, (1, 2)).tolist() == (arr > 0).tolist()
    p16 = tmp_path / "b.png"
    Image.fromarray(arr.astype(np.uint16) * 1000).save(p16)
    assert read_label_image(p16).tolist() == (arr.astype(int) * 1000).tolist()
    pal = Image.fromarray(arr).convert("P")
    pal.save(tmp_path / "c.png")
    assert read_mask(tmp_path / "c.png").tolist() == (np.asarray(pal) > 0).tolist()
    gray_rgb = np.repeat(arr[..., None] * 100, 3, axis=2)
    assert read_mask(_png(tmp_path / "d.png", gray_rgb)).tolist() == (arr > 0).tolist()


def test_npy_masks(tmp_path):
    vol = np.zeros((3, 4, 5), np.int16)
    vol[1, 1:3, 2:4] = 3
    np.save(tmp_path / "v.npy", vol)
    assert read_mask(tmp_path / "v.npy").sum() == 4
    np.save(tmp_path / "f.npy", vol.astype(np.float32))
    assert read_mask(tmp_path / "f.npy", (3,)).sum() == 4
    np.save(tmp_path / "b.npy", vol > 0)
    assert read_mask(tmp_path / "b.npy").sum() == 4


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.with_suffix(".png").write_bytes(b"not a png"), "unreadable"),
        (
            lambda p: _png(
                p.with_suffix(".png"),
                np.dstack(
                    [np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8)]
                ),
            ),
            "colour",
        ),  # fmt: skip
        (lambda p: np.save(p.with_suffix(".npy"), np.full((4, 4), 0.5)), "non-integer"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros(4)), "2-D or 3-D"),
        (
            lambda p: np.save(p.with_suffix(".npy"), np.array(["a", "b"], dtype=object), allow_pickle=True),
            "unreadable",
        ),  # fmt: skip
    ],
)
def test_bad_files_give_reasons(tmp_path, make, match):
    make(tmp_path / "x")
    path = next(tmp_path.iterdir())
    with pytest.raises(MaskReadError, match=match):
        read_mask(path)


def test_index_masks(tmp_path):
    _png(tmp_path / "1.2.3.png", np.zeros((2, 2), np.uint8))
    np.save(tmp_path / "dup.npy", np.zeros((2, 2), np.uint8))
    _png(tmp_path / "dup.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "seg.dcm").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    _png(sub / "4.5.png", np.zeros((2, 2), np.uint8))
    index = index_masks(tmp_path)
    assert set(index.files) == {"1.2.3", "4.5"}  # the stem is the id, SOPInstanceUID dots kept
    reasons = dict(index.skipped)
    assert "DICOM SEG" in reasons["seg.dcm"] and "not a mask file" in reasons["notes.txt"]
    assert (
        "duplicate id: 2 mask files" in reasons["dup.npy"]
        and "'dup'" not in reasons["dup.npy"]
        and "dup.png" in reasons
    )
    assert ".DS_Store" not in reasons
    with pytest.raises(InputError, match="not a folder"):
        index_masks(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no mask file"):
        index_masks(empty)


def test_flags():
    assert parse_labels(None) is None and parse_labels("") is None
    assert parse_labels("1, 2,2") == (1, 2)
    for bad in ("x", "0", "1;2"):
        with pytest.raises(InputError):
            parse_labels(bad)
    assert parse_spacing("0.5x0.7") == (0.5, 0.7)
    assert parse_spacing("2.5X0.5x0.5") == (2.5, 0.5, 0.5)
    for bad in ("0.5", "0x1", "a x b", "1x2x3x4", "-1x1"):
        with pytest.raises(InputError, match="spacing="):
            parse_spacing(bad)


def test_ids_with_an_image_extension_find_their_masks(tmp_path: Path) -> None:
    """`0001.png`, `0002.jpg` and `0003.nii.gz` name the masks 0001.png, 0002.npy and
    0003.nii.gz; an id that names a mask exactly keeps it, an unknown extension does not match."""
    from fairaudit.io.masks import index_masks, keyed_by_ids

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "0001.png")
    np.save(tmp_path / "0002.npy", np.zeros((4, 4), np.uint8))
    (tmp_path / "0003.nii.gz").write_bytes(b"")  # named only: indexing reads no content
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "0004.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "0005.png")
    ids = ["0001.png", "0002.jpg", "0003.nii.gz", "0004", "0004.png", "0005.tiff"]
    files = keyed_by_ids(index_masks(tmp_path), ids).files
    assert files["0001.png"].name == "0001.png"
    assert files["0002.jpg"].name == "0002.npy"
    assert files["0003.nii.gz"].name == "0003.nii.gz"
    assert files["0004"].name == "0004.png" and "0004.png" not in files
    assert "0005.tiff" not in files and files["0005"].name == "0005.png"
