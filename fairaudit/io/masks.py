"""Segmentation masks named by id: `<id>.png`, `<id>.npy` or `<id>.nii[.gz]` in a folder.

The file name without its suffix is the id (for example `<SOPInstanceUID>.png`, as in
sample_data/masks/; `case_001.nii.gz` is `case_001`). NIfTI masks are read by
fairaudit.io.nifti: reoriented to the canonical (RAS+) axes, with their geometry (shape,
affine, spacing from the header) for the checks of docs/nifti.md. PNG: 8- or 16-bit grayscale or palette (the palette index is the
label); a colour PNG whose channels are equal is read as grayscale. NPY: an integer or
boolean array (floats only when every value is a whole number), loaded without pickle.
2-D and 3-D masks are accepted. DICOM SEG files are not supported (export the segments to
PNG or NPY first); they are listed in the manifest with that reason.

Labels: by default every nonzero value is foreground; `labels` (from `--mask-labels
1,2`) makes only those values foreground. Reading never raises for a bad file: it
returns the reason, which ends up in manifest.csv.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fairaudit.errors import InputError, arg
from fairaudit.io.nifti import strip_suffix

if TYPE_CHECKING:
    from fairaudit.io.nifti import VolumeInfo

log = logging.getLogger(__name__)

MASK_SUFFIXES: tuple[str, ...] = (".png", ".npy", ".nii", ".nii.gz")
#: How the messages name the mask files a folder may hold.
MASK_NAMING = "<id>.png, <id>.npy or <id>.nii.gz"
_DICOM_SUFFIXES = (".dcm", ".dicom")


@dataclass(frozen=True)
class MaskIndex:
    """A mask folder: id -> file for usable names; (relative path, reason) for the others."""

    root: Path
    files: dict[str, Path]
    skipped: list[tuple[str, str]]

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def parse_labels(text: str | None, argument: str = "mask_labels") -> tuple[int, ...] | None:
    """'1,2' -> (1, 2); None or '' -> None (any nonzero value is foreground). `argument`: the
    argument that gave the text, for messages (fairaudit.errors.arg)."""
    if text is None or not text.strip():
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise InputError(
                f"{arg(argument)} '{text}': expected integer labels separated by commas, e.g. 1,2.",
                argument=argument,
            ) from None
        if value == 0:
            raise InputError(
                f"{arg(argument)} '{text}': 0 is background and cannot be a foreground label.",
                argument=argument,
            )
        out.append(value)
    return tuple(dict.fromkeys(out))


def parse_spacing(text: str | None) -> tuple[float, ...] | None:
    """'0.5x0.5' (rows x columns, mm; three values for volumes) -> (0.5, 0.5)."""
    if text is None or not text.strip():
        return None
    try:
        values = tuple(float(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        values = ()
    if len(values) not in (2, 3) or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(
            f"{arg('spacing')} '{text}': expected two (rows x columns) or three positive numbers in mm, e.g. 0.5x0.5.",
            argument="spacing",
        )
    return values


def index_masks(root: Path | str, argument: str = "masks") -> MaskIndex:
    """Every file under `root` (recursively): usable masks by id, and the others with a reason.
    `argument`: the argument that gave the folder, for messages (fairaudit.errors.arg).

    The folder is walked as the DICOM folder is (fairaudit.io.dicom._scan.walk): a symbolic
    link leading out of it is not followed but listed with its reason, unless
    --follow-symlinks; FIFOs and devices are never opened (docs/threat-model.md). A link to a
    mask inside the folder is another id for that mask, as before."""
    from fairaudit.io.dicom._scan import walk

    root = Path(root)
    if not root.is_dir():
        raise InputError(
            "is not a folder.",
            file=str(root),
            hint=f"Pass {arg(argument)} a folder of {MASK_NAMING} files.",
            argument=argument,
        )
    by_id: dict[str, list[Path]] = {}
    skipped: list[tuple[str, str]] = []
    for entry in walk(root, aliases=True):
        rel = entry.rel
        if rel != "." and any(part.startswith(".") for part in rel.split("/")):
            continue  # hidden files (.DS_Store, editor swap files) are not inputs
        if entry.problem is not None:  # a link leaving the folder, a broken link, ...
            status, why = entry.problem
            skipped.append((rel, f"{status}: {why}"))
            continue
        path = root / rel
        suffix = path.suffix.lower()
        nifti_id = strip_suffix(path.name)
        if nifti_id is not None:  # case.nii.gz: Path.stem would keep ".nii"
            by_id.setdefault(nifti_id, []).append(path)
        elif suffix in MASK_SUFFIXES:
            by_id.setdefault(path.stem, []).append(path)
        elif suffix in _DICOM_SUFFIXES:
            skipped.append(
                (rel, "DICOM SEG masks are not supported: export the segments as <id>.png or .npy")
            )
        else:
            skipped.append((rel, f"not a mask file (expected {MASK_NAMING})"))
    files: dict[str, Path] = {}
    for key, paths in by_id.items():
        if len(paths) == 1:
            files[key] = paths[0]
        else:
            for p in paths:
                skipped.append(
                    # Not the id itself: a reason is written in clear whatever --keep-ids says.
                    (p.relative_to(root).as_posix(), f"duplicate id: {len(paths)} mask files share it")
                )
    if not files:
        raise InputError(
            f"no mask file ({MASK_NAMING}) found ({len(skipped)} other files).",
            file=str(root),
            hint=f"Check {arg(argument)}.",
            argument=argument,
        )
    return MaskIndex(root, files, skipped)


#: Extensions a demographics id may carry that a mask's id does not (the image's file name:
#: `case_001.nii.gz`, `0001.png`); such an id also finds the mask named without it.
_ID_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".npy")


def _id_without_extension(key: str) -> str | None:
    nifti_id = strip_suffix(key)
    if nifti_id is not None:
        return nifti_id
    stem, dot, ext = key.rpartition(".")
    return stem if dot and stem and f".{ext.lower()}" in _ID_EXTENSIONS else None


def keyed_by_ids(index: MaskIndex, ids: Sequence[str]) -> MaskIndex:
    """`index` with each mask renamed to the demographics id that names it with an image
    file's extension: ids are matched with or without it, as images are (docs/nifti.md,
    "Ids"). A mask that an id names exactly keeps its name."""
    wanted = set(ids)
    files = dict(index.files)
    for key in ids:
        if key in files:
            continue
        bare = _id_without_extension(key)
        if bare is not None and bare in files and bare not in wanted:
            files[key] = files.pop(bare)
    return MaskIndex(index.root, files, index.skipped)


class MaskReadError(Exception):
    """A mask file that cannot be used; the message is the manifest reason."""


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        mode = img.mode
        arr = np.asarray(img)
    if arr.ndim == 3:
        if arr.shape[2] in (3, 4) and np.all(arr[..., 0:1] == arr[..., 1:3]):
            return arr[..., 0]
        if arr.shape[2] == 2:  # LA: grayscale with alpha
            return arr[..., 0]
        raise MaskReadError(f"colour PNG ({mode}): a mask must be a single-channel label image")
    return arr


def read_label_volume(path: Path) -> tuple[np.ndarray, VolumeInfo | None]:
    """The label image of a mask file and, for a NIfTI file, its canonical geometry (None for
    PNG and NPY, which carry none); MaskReadError with the reason."""
    if strip_suffix(path.name) is None:
        return read_label_image(path), None
    from fairaudit.io.dicom._bounded import DEFAULT_MAX_FILE_SIZE
    from fairaudit.io.nifti import NiftiError, read_volume

    try:
        arr, info = read_volume(path, raw=True, max_file_size=DEFAULT_MAX_FILE_SIZE)
    except NiftiError as exc:
        raise MaskReadError(exc.reason) from None
    return _check_labels(arr), info


def read_label_image(path: Path) -> np.ndarray:
    """The stored label image of a mask file, or MaskReadError with the reason (NIfTI:
    reoriented to the canonical axes, its geometry dropped: see read_label_volume)."""
    if strip_suffix(path.name) is not None:
        return read_label_volume(path)[0]
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            arr = _read_png(path)
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            raise MaskReadError(f"unsupported mask format '{suffix}'")
    except MaskReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a per-file reason
        from fairaudit._util.privacy import scrub_reason

        # Never the path nor a quoted value: file names can name the patient (fairaudit._util.privacy).
        text = str(exc).replace(str(path), "<file>").replace(path.name, "<file>")
        first = scrub_reason(text).splitlines()[0][:200] if text.strip() else ""
        raise MaskReadError(f"unreadable: {type(exc).__name__}: {first}") from None
    return _check_labels(arr)


def _check_labels(arr: np.ndarray) -> np.ndarray:
    """`arr` when it is a 2-D or 3-D label image, else MaskReadError with the reason."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise MaskReadError(f"a mask must be 2-D or 3-D, this one has shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise MaskReadError("non-integer values (probabilities?): threshold the masks into labels first")
    elif arr.dtype.kind not in "biu":
        raise MaskReadError(f"values of type {arr.dtype} are not labels")
    return arr


def foreground(labels_image: np.ndarray, labels: Sequence[int] | None) -> np.ndarray:
    """Boolean foreground: any nonzero value, or the values in `labels`."""
    if labels is None:
        return labels_image != 0
    return np.isin(labels_image, np.asarray(labels))


def read_mask(path: Path, labels: Sequence[int] | None = None) -> np.ndarray:
    """The boolean foreground of one mask file (MaskReadError with the reason if unusable)."""
    return foreground(read_label_image(path), labels)
