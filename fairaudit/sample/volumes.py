"""The synthetic 3-D cohort of `fairaudit sample-data --volumes` (docs/nifti.md).

``generate_volumes(out_dir, n, size, seed)`` writes::

    images/case_NNN.nii.gz      one CT-like volume per case (int16), size x size x size // 3
    masks/case_NNN.nii.gz       ground truth (uint8): 0 background, 1 liver, 2 tumour
    pred_masks/case_NNN.nii.gz  a simulated model's masks, same labels
    demographics.csv            path, patient_id, sex, age_group, site
    README.md                   the command, the seed and the planted error

Why: a NIfTI segmentation audit (`--structures 1=liver,2=tumour`) needs volumes with
anisotropic spacing (0.8 x 0.8 x 2.5 mm), a known per-group difference to find, and files
stored in more than one orientation. Every other case is stored with its first axis
flipped (LAS instead of RAS): image and masks alike, so they still match after
reorientation.

The planted error: the simulated model's liver of every site-C case is dilated by one
voxel (6-connected) at the boundary, on top of the boundary noise every case gets, so
site C's liver Dice is lower; the tumour is predicted alike for every site. Sex and age
group are drawn independently of site. All randomness flows from ``seed`` through numpy
Generators (one for the plan, one per case seeded by (seed, case)); the same arguments
write byte-identical files (gzip without a timestamp).
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairaudit.errors import InputError, arg

SPACING_MM = (0.8, 0.8, 2.5)
SITES = ("A", "B", "C")
#: The site whose predicted livers are dilated by one voxel.
PLANTED_SITE = "C"
SEXES = ("F", "M")
AGE_GROUPS = ("18-39", "40-64", "65+")
LABELS = {1: "liver", 2: "tumour"}
MIN_SIZE, MAX_SIZE = 16, 256
OUTPUTS = ("images", "masks", "pred_masks", "demographics.csv", "README.md")
#: Probability that a voxel just inside (outside) the true liver boundary is predicted
#: outside (inside), for every case: the model's ordinary boundary noise.
BOUNDARY_FLIP = 0.15


@dataclass
class VolumeFiles:
    """What generate_volumes wrote, and per-site counts."""

    out_dir: Path
    images: Path
    masks: Path
    pred_masks: Path
    demographics: Path
    readme: Path
    n: int
    shape: tuple[int, int, int]
    seed: int
    by_site: dict[str, int] = field(default_factory=dict)


def volume_shape(size: int) -> tuple[int, int, int]:
    """The canonical shape of every volume: size x size in-plane, size // 3 slices (at
    2.5 mm, about the in-plane field of view)."""
    return (size, size, max(4, size // 3))


def _ellipsoid(shape: tuple[int, int, int], centre: np.ndarray, radii_mm: np.ndarray) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d = sum(((g - c) * sp / r) ** 2 for g, c, sp, r in zip(grids, centre, SPACING_MM, radii_mm, strict=True))
    return d <= 1.0


def _case(shape: tuple[int, int, int], rng: np.random.Generator, planted: bool) -> tuple[np.ndarray, ...]:
    """(image int16, truth uint8, prediction uint8) of one case, canonical orientation."""
    from scipy import ndimage

    size = np.array(shape, dtype=float)
    extent = size * np.array(SPACING_MM)
    body = _ellipsoid(shape, size / 2 - 0.5, extent * np.array([0.46, 0.42, 0.6]))
    liver_c = size / 2 - 0.5 + rng.uniform(-0.06, 0.06, 3) * size
    liver_r = extent * rng.uniform(0.22, 0.3, 3) * np.array([1.0, 1.0, 1.4])
    liver = _ellipsoid(shape, liver_c, liver_r) & body
    tumour_r = np.full(3, float(rng.uniform(0.22, 0.32) * min(liver_r)))
    offset = rng.uniform(-0.35, 0.35, 3) * liver_r / np.array(SPACING_MM)
    tumour = _ellipsoid(shape, liver_c + offset, tumour_r) & liver
    truth = np.zeros(shape, np.uint8)
    truth[liver] = 1
    truth[tumour] = 2

    pred_liver = liver | tumour
    inner = pred_liver & ~ndimage.binary_erosion(pred_liver)
    outer = ndimage.binary_dilation(pred_liver) & ~pred_liver
    flip = rng.random(shape) < BOUNDARY_FLIP
    pred_liver = (pred_liver & ~(inner & flip)) | (outer & flip)
    if planted:
        pred_liver = ndimage.binary_dilation(pred_liver)  # the planted one-voxel boundary error
    shift = tuple(int(s) for s in rng.integers(-1, 2, 2))  # the tumour: off by a voxel in-plane, or not
    pred_tumour = np.roll(tumour, shift, axis=(0, 1)) & pred_liver
    pred = np.zeros(shape, np.uint8)
    pred[pred_liver & body] = 1
    pred[pred_tumour] = 2

    image = np.where(body, 40, -900).astype(np.int16)
    image[liver] = 110
    image[tumour] = 70
    image += (rng.integers(-2, 3, shape) * 6).astype(np.int16)  # coarse noise: compresses well
    return image, truth, pred


def _affine(shape: tuple[int, int, int], flipped: bool) -> np.ndarray:
    """Voxel -> mm: RAS, or (flipped) LAS with the same world positions."""
    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = -np.array(shape) * np.array(SPACING_MM) / 2
    if flipped:
        affine[0, 0] = -SPACING_MM[0]
        affine[0, 3] += SPACING_MM[0] * (shape[0] - 1)
    return affine


def _save(path: Path, data: np.ndarray, affine: np.ndarray, flipped: bool) -> None:
    """A .nii.gz with no timestamp in its gzip header (byte-identical reruns)."""
    import nibabel as nib

    stored = data[::-1] if flipped else data
    img = nib.Nifti1Image(np.ascontiguousarray(stored), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    raw = img.to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        gz.write(raw)
    path.write_bytes(buf.getvalue())


def generate_volumes(
    out_dir: Path | str, n: int = 60, size: int = 48, seed: int = 0, *, overwrite: bool = False
) -> VolumeFiles:
    """Write the 3-D cohort into `out_dir` (see the module docstring). Refuses to write over
    an earlier cohort's files unless `overwrite`."""
    if not isinstance(n, int) or n < 1:
        raise InputError(f"{arg('n')} must be a positive number of volumes, got {n!r}.", argument="n")
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(
            f"{arg('size')} must be between {MIN_SIZE} and {MAX_SIZE} voxels for volumes, got {size!r}.",
            argument="size",
        )
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"{arg('seed')} must be a non-negative integer, got {seed!r}.", argument="seed")
    out = Path(out_dir)
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise InputError(
            f"already holds {', '.join(existing)}.",
            file=str(out),
            hint=f"Pass {arg('overwrite')} to replace them, or choose another folder.",
            argument="overwrite",
        )
    folders = {name: out / name for name in ("images", "masks", "pred_masks")}
    for folder in folders.values():
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
    shape = volume_shape(size)
    plan = np.random.default_rng([seed, 0])
    sites = plan.choice(len(SITES), n)
    sexes = plan.choice(len(SEXES), n)
    ages = plan.choice(len(AGE_GROUPS), n)
    rows = []
    for k in range(n):
        name = f"case_{k:03d}"
        site = SITES[int(sites[k])]
        image, truth, pred = _case(shape, np.random.default_rng([seed, 1, k]), site == PLANTED_SITE)
        flipped = k % 2 == 1
        affine = _affine(shape, flipped)
        for folder, data in (("images", image), ("masks", truth), ("pred_masks", pred)):
            _save(folders[folder] / f"{name}.nii.gz", data, affine, flipped)
        rows.append([name, f"P{k:03d}", SEXES[int(sexes[k])], AGE_GROUPS[int(ages[k])], site])
    demographics = out / "demographics.csv"
    with demographics.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["path", "patient_id", "sex", "age_group", "site"])
        w.writerows(rows)
    by_site = {s: int((sites == i).sum()) for i, s in enumerate(SITES)}
    readme = out / "README.md"
    readme.write_text(_readme(n, size, seed, shape, by_site), encoding="utf-8")
    return VolumeFiles(
        out, folders["images"], folders["masks"], folders["pred_masks"], demographics, readme,
        n, shape, seed, by_site,
    )  # fmt: skip


def volumes_note(cohort_dir: Path) -> str:
    """The paragraph of a 2-D cohort's README.md about a 3-D cohort in its `volumes/` folder
    (sample_data/volumes), or "" when it has none: regenerating one keeps the other's mention."""
    if not (Path(cohort_dir) / "volumes" / "README.md").is_file():
        return ""
    return """
## 3-D volumes (`volumes/`)

`volumes/` holds a small 3-D segmentation cohort in NIfTI (`images/`, `masks/`, `pred_masks/` as
`case_NNN.nii.gz`, 0.8 x 0.8 x 2.5 mm, labels 1 liver and 2 tumour, half the cases stored LAS), its
`demographics.csv` and its own README.md (the command that made it and the planted error: the simulated
model's liver is one voxel too wide for site C). Audit each structure on its own:

    fairaudit audit volumes/images --task segmentation --masks volumes/masks --pred-masks volumes/pred_masks \\
        --demographics volumes/demographics.csv --id-column path --attribute site \\
        --structures 1=liver,2=tumour --min-group-size 5 --out audit_out
"""


def _readme(n: int, size: int, seed: int, shape: tuple[int, int, int], by_site: dict[str, int]) -> str:
    sites = ", ".join(f"{s} {c}" for s, c in by_site.items())
    dims = " x ".join(map(str, shape))
    mm = " x ".join(map(str, SPACING_MM))
    return f"""# Synthetic 3-D segmentation cohort (NIfTI)

Made by

    fairaudit sample-data OUT --volumes --n {n} --size {size} --seed {seed}

**Synthetic phantoms only: no real patient data.** The same command writes byte-identical files.

| path | what |
|---|---|
| `images/case_NNN.nii.gz` | {n} CT-like volumes, int16, {dims} voxels of {mm} mm |
| `masks/case_NNN.nii.gz` | ground truth, uint8: 0 background, 1 liver, 2 tumour |
| `pred_masks/case_NNN.nii.gz` | a simulated model's masks, same labels |
| `demographics.csv` | path (the case id: the file name without .nii.gz), patient_id, sex, age_group, site |

Every other case (odd numbers) is stored with its first axis flipped (LAS, not RAS), images and masks
alike: fairaudit reorients every volume to RAS before comparing (docs/nifti.md).

Cases by site: {sites}. The planted error: the simulated model's liver of every site-{PLANTED_SITE} case is
dilated by one voxel at the boundary (besides the boundary noise of every case), so site {PLANTED_SITE} has a
lower liver Dice and a larger volume error; the tumour is predicted alike everywhere, and sex and age group
are independent of site. An audit should show it:

    fairaudit audit images --task segmentation --masks masks --pred-masks pred_masks \\
        --demographics demographics.csv --id-column path --attribute site --attribute sex \\
        --structures 1=liver,2=tumour --min-group-size 5 --out audit_out
"""
