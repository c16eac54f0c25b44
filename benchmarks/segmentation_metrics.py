"""Per-image segmentation metric time: fairaudit's case_metrics against MONAI and the former method.

On the same lung-like masks (two large ellipses; the prediction shifted, eroded, with a
ragged edge) at 64, 512, 1024 and 2048 pixels square, and one 64 x 256 x 256 volume,
this run times:

  (a) fairaudit: `case_metrics(truth, pred, spacing)` (dice, iou, hd95, assd,
      volume_error: surface points of each mask's bounding box, nearest neighbours from a
      k-d tree) and `normalized_surface_dice(..., tolerance=1 mm)`;
  (b) baseline: MONAI's `compute_dice` + `compute_hausdorff_distance(percentile=95)` +
      `compute_average_surface_distance(symmetric=True)` (the same three numbers), and
      `compute_surface_dice` for NSD;
  (c) baseline: the former method, kept below (`_edt_case_metrics`): binary erosion and
      scipy's exact distance transform of the union's bounding box, once per direction.

It checks that (a) equals (c) exactly and (b) to 1e-5 (MONAI's distances are float32),
then prints milliseconds per image (median of --repeats calls) and the ratios
baseline / fairaudit (> 1: fairaudit is faster). torch runs with one thread: every
method here is single-threaded, so the comparison is per core (the audit runs one
image per worker process).

    .venv/bin/python benchmarks/segmentation_metrics.py [--sizes 64,512,1024,2048] [--repeats 7] [--no-volume]

3-D mode (issue 22): `--volumes N --volume-size S` times every metric of N organ-like
volumes of S^3 voxels at anisotropic spacing (2.5 x 0.8 x 0.7 mm; the prediction shifted
a slice, dilated on one side, ragged): fairaudit's one `case_metrics` call per volume (dice,
iou, hd95, assd, volume_error and nsd at 1 mm) against MONAI's compute_dice +
compute_hausdorff_distance(percentile=95) + compute_average_surface_distance(symmetric) +
compute_surface_dice on the same volumes (one call each per volume, CPU, one torch thread),
both checked equal (1e-5) before timing. The issue's target, 50 volumes of 128^3:

    .venv/bin/python benchmarks/segmentation_metrics.py --volumes 50 --volume-size 128
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from _timing import timed  # noqa: E402

from fairaudit.stats._segmentation import case_metrics, normalized_surface_dice, surface_points  # noqa: E402

TOLERANCE_MM = 1.0


def lungs(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two lung-like ellipses (ellipsoids for a volume) filling most of the image; the
    prediction shifted by about 1%, eroded by 0.5% and with a ragged edge."""
    rng = np.random.default_rng(seed)
    size = shape[-1]
    grid = np.meshgrid(*[np.arange(s) / s for s in shape], indexing="ij")
    truth = np.zeros(shape, bool)
    for cx in (0.3, 0.7):
        r2 = ((grid[-1] - cx) / 0.17) ** 2 + ((grid[-2] - 0.5) / 0.36) ** 2
        if len(shape) == 3:
            r2 = r2 + ((grid[0] - 0.5) / 0.45) ** 2
        truth |= r2 <= 1
    shift = (max(1, size // 100), -max(1, size // 150))
    pred = np.roll(truth, shift, axis=(-2, -1))
    pred = ndimage.binary_erosion(pred, iterations=max(1, size // 200))
    edge = pred ^ ndimage.binary_dilation(pred, iterations=2)
    return truth, pred | (edge & (rng.random(shape) < 0.3))


def _edt_case_metrics(truth: np.ndarray, pred: np.ndarray, spacing: list[float]) -> dict[str, float]:
    """The former case_metrics (dice, iou, hd95, assd, volume_error): crop to the union's
    bounding box plus one voxel, erode, one exact distance transform per direction."""
    nt, np_, inter = int(truth.sum()), int(pred.sum()), int(np.count_nonzero(truth & pred))
    idx = np.nonzero(truth | pred)
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in idx)
    t, p = truth[box], pred[box]
    st = t & ~ndimage.binary_erosion(t, border_value=0)
    sp = p & ~ndimage.binary_erosion(p, border_value=0)
    d_pt = ndimage.distance_transform_edt(~st, sampling=spacing)[sp]
    d_tp = ndimage.distance_transform_edt(~sp, sampling=spacing)[st]
    return {
        "dice": 2.0 * inter / (nt + np_),
        "iou": inter / (nt + np_ - inter),
        "hd95": float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))),
        "assd": float(np.concatenate([d_pt, d_tp]).mean()),
        "volume_error": (np_ - nt) / nt,
    }


def _monai(truth: np.ndarray, pred: np.ndarray, spacing: list[float]) -> dict[str, Callable[[], float]]:
    import monai.metrics as mm
    import torch

    y = torch.from_numpy(truth[None, None].astype(np.float32))
    yp = torch.from_numpy(pred[None, None].astype(np.float32))
    return {
        "dice": lambda: float(mm.compute_dice(yp, y, include_background=True).item()),
        "hd95": lambda: float(
            mm.compute_hausdorff_distance(
                yp, y, include_background=True, percentile=95, spacing=spacing
            ).item()
        ),
        "assd": lambda: float(
            mm.compute_average_surface_distance(
                yp, y, include_background=True, symmetric=True, spacing=spacing
            ).item()
        ),
        "nsd": lambda: float(
            mm.compute_surface_dice(yp, y, [TOLERANCE_MM], include_background=True, spacing=spacing).item()
        ),
    }


def run(shape: tuple[int, ...], repeats: int) -> dict[str, object]:
    truth, pred = lungs(shape)
    # A radiograph's pixel spacing (anisotropic, so the distances use it); slices 2 mm apart.
    spacing = ([2.0] if len(shape) == 3 else []) + [0.139 * 1024 / shape[-1], 0.143 * 1024 / shape[-1]]
    ours = case_metrics(truth, pred, spacing).values
    old = _edt_case_metrics(truth, pred, spacing)
    if {m: ours[m] for m in old} != old:
        raise SystemExit(f"{shape}: case_metrics {ours} differs from the distance-transform method {old}")
    monai = _monai(truth, pred, spacing)
    nsd = normalized_surface_dice(truth, pred, spacing, TOLERANCE_MM)
    for name, value in (*((m, ours[m]) for m in ("dice", "hd95", "assd")), ("nsd", nsd)):
        ref = monai[name]()
        if abs(value - ref) > 1e-5 * max(1.0, abs(ref)):
            raise SystemExit(f"{shape}: {name} {value} differs from MONAI's {ref}")
    t_ours = timed(lambda: case_metrics(truth, pred, spacing), repeats)
    t_old = timed(lambda: _edt_case_metrics(truth, pred, spacing), repeats)
    t_monai = sum(timed(monai[m], repeats) for m in ("dice", "hd95", "assd"))
    t_nsd = timed(lambda: normalized_surface_dice(truth, pred, spacing, TOLERANCE_MM), repeats)
    t_monai_nsd = timed(monai["nsd"], repeats)
    points = len(surface_points(truth)) + len(surface_points(pred))
    return {
        "shape": " x ".join(str(s) for s in shape),
        "points": points,
        "ours": t_ours,
        "old": t_old,
        "monai": t_monai,
        "nsd": t_nsd,
        "monai_nsd": t_monai_nsd,
    }


VOLUME_SPACING = [2.5, 0.8, 0.7]


def organ_volumes(n: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n` (truth, prediction) pairs of size^3: an ellipsoid at a random place and size;
    the prediction shifted a slice, dilated by a voxel on one side, with a ragged edge."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij")
    out = []
    for _ in range(n):
        c = rng.uniform(-0.2, 0.2, 3)
        r = rng.uniform(0.35, 0.6, 3)
        truth = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        pred = np.roll(truth, 1, axis=0)
        pred |= ndimage.binary_dilation(pred) & (xx > c[2])
        edge = pred ^ ndimage.binary_erosion(pred)
        out.append((truth, pred & ~(edge & (rng.random(truth.shape) < 0.2))))
    return out


def run_volumes(n: int, size: int) -> None:
    """The 3-D mode: every metric of n volumes, fairaudit against MONAI, totals and ratio."""
    pairs = organ_volumes(n, size)
    t0 = time.perf_counter()
    ours = [case_metrics(t, p, VOLUME_SPACING, TOLERANCE_MM).values for t, p in pairs]
    t_ours = time.perf_counter() - t0
    t_monai = 0.0
    for (t, p), mine in zip(pairs, ours, strict=True):
        calls = _monai(t, p, VOLUME_SPACING)
        for name in ("dice", "hd95", "assd", "nsd"):
            s = time.perf_counter()
            ref = calls[name]()
            t_monai += time.perf_counter() - s
            if abs(mine[name] - ref) > 1e-5 * max(1.0, abs(ref)):
                raise SystemExit(f"volume: {name} {mine[name]} differs from MONAI's {ref}")
    points = sum(len(surface_points(t)) + len(surface_points(p)) for t, p in pairs) / n
    print(f"| {n} volumes of {size}^3, spacing {' x '.join(map(str, VOLUME_SPACING))} mm | {points:,.0f} surface "
          f"points each | fairaudit {t_ours:.2f} s (dice, iou, hd95, assd, volume_error, nsd) | MONAI {t_monai:.2f} s "
          f"(dice, hd95, assd, nsd) | MONAI / fairaudit {t_monai / t_ours:.1f}x |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,512,1024,2048", help="square image sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-volume", action="store_true", help="leave out the 64 x 256 x 256 volume")
    ap.add_argument("--volumes", type=int, default=0, help="3-D mode: this many volumes (the issue: 50)")
    ap.add_argument("--volume-size", type=int, default=128, help="3-D mode: voxels per side (the issue: 128)")
    args = ap.parse_args()
    import monai
    import scipy
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    if args.volumes > 0:
        print(
            f"# 3-D segmentation metrics: monai {monai.__version__}, scipy {scipy.__version__}, torch 1 thread"
        )
        run_volumes(args.volumes, args.volume_size)
        print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
        return
    shapes: list[tuple[int, ...]] = [(int(s), int(s)) for s in args.sizes.split(",") if s.strip()]
    if not args.no_volume:
        shapes.append((64, 256, 256))
    rows = [run(shape, args.repeats) for shape in shapes]
    print(
        f"# segmentation metrics benchmark: {platform.machine()}, {platform.processor() or platform.platform()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"torch {torch.__version__} (1 thread), monai {monai.__version__}"
    )
    print(
        "| mask | surface points | fairaudit ms | former EDT ms | MONAI dice+hd95+assd ms "
        "| former / fairaudit | MONAI / fairaudit | NSD ms | MONAI NSD ms | MONAI / fairaudit (NSD) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ours, old, mon, nsd, mon_nsd = (
            1000 * float(r[k]) for k in ("ours", "old", "monai", "nsd", "monai_nsd")
        )  # type: ignore[arg-type]
        print(
            f"| {r['shape']} | {r['points']:,} | {ours:.2f} | {old:.2f} | {mon:.2f} | {old / ours:.1f}x "
            f"| {mon / ours:.1f}x | {nsd:.2f} | {mon_nsd:.2f} | {mon_nsd / nsd:.1f}x |"
        )
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
