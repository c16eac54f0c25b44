"""Reading NIfTI volumes: fairaudit's folder reader with --workers against a serial nibabel loop,
and the peak memory of a 3-D segmentation audit (issue 22's targets, docs/nifti.md).

Reading (the default): writes --n `.nii.gz` volumes of --shape (int16, seeded noise and
a sphere, every other one stored flipped) into a temporary folder, then times

  (a) baseline: a serial nibabel loop doing the same work per file: `nib.load`,
      `as_closest_canonical`, the voxels as float32, the zooms;
  (b) fairaudit: `fairaudit.io.dicom.iter_outcomes(folder, header_only=False,
      workers=W)`, which recognizes each file by content, checks its header against the
      limits, reads and reorients it in W worker processes (docs/nifti.md).

Both stream the volumes as an audit does (one held at a time); every volume's digest and
five whole volumes are checked equal. It prints the best of --repeat alternating runs
of each, in files/s, and the ratio (a)/(b) in time (target: at least 1.5 with --workers >= 2 on a machine with
that many free cores).

Memory (--memory): writes --volumes pairs of uint8 masks of --memory-shape (default
256 x 256 x 128; an ellipsoid, the prediction dilated by a voxel in half the cases) and a
demographics CSV, runs `fairaudit audit --task segmentation` on them in a child process,
and samples the peak summed PSS of its process tree (target: under 2 GB at 200 volumes).

    .venv/bin/python benchmarks/nifti_read.py --n 1000 --shape 128x128x64 --workers 4
    .venv/bin/python benchmarks/nifti_read.py --memory --volumes 200 --workers 2
    .venv/bin/python benchmarks/nifti_read.py --n 40 --shape 32x32x16 --workers 2   # a quick check
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _shape(text: str) -> tuple[int, int, int]:
    parts = tuple(int(p) for p in text.lower().split("x"))
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected three sizes like 128x128x64, got {text!r}")
    return parts  # type: ignore[return-value]


def _affine(shape: tuple[int, int, int], flipped: bool) -> np.ndarray:
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    if flipped:
        affine[0, 0] = -0.8
        affine[0, 3] = 0.8 * (shape[0] - 1)
    return affine


def _sphere(shape: tuple[int, int, int], k: int) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    centre = [s / 2 + (k % 3) - 1 for s in shape]
    radius = [s * 0.3 for s in shape]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radius, strict=True)) <= 1.0


def write_volumes(root: Path, n: int, shape: tuple[int, int, int], seed: int = 0) -> list[Path]:
    """`n` int16 .nii.gz volumes (noise and a sphere), every other one stored flipped."""
    import nibabel as nib

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        data = (rng.integers(0, 64, shape) + 400 * _sphere(shape, k)).astype(np.int16)
        flipped = k % 2 == 1
        path = root / f"vol_{k:05d}.nii.gz"
        nib.save(nib.Nifti1Image(data[::-1].copy() if flipped else data, _affine(shape, flipped)), str(path))
        paths.append(path)
    return paths


def _digest(array: np.ndarray) -> float:
    """A cheap check value per volume (the sum of every 5th voxel along each axis), so
    that both readers stream like an audit does, holding one volume at a time."""
    return float(array[::5, ::5, ::5].sum(dtype=np.float64))


def nibabel_loop(paths: list[Path], keep: set[int] = frozenset()) -> tuple[list[float], dict]:
    """The baseline: each file loaded, reoriented and read as float32, one after another.
    Returns each volume's digest, and the arrays at the indices in `keep`."""
    import nibabel as nib

    digests, kept = [], {}
    for k, path in enumerate(paths):
        img = nib.as_closest_canonical(nib.load(str(path)))
        array = img.get_fdata(dtype=np.float32)
        img.header.get_zooms()
        digests.append(_digest(array))
        if k in keep:
            kept[k] = array
    return digests, kept


def fairaudit_read(root: Path, workers: int, keep: set[int] = frozenset()) -> tuple[list[float], dict]:
    """fairaudit's folder reader, streamed: digests of the volumes read, arrays in `keep`."""
    from fairaudit.io.dicom import iter_outcomes

    digests, kept = [], {}
    for o in iter_outcomes(root, header_only=False, workers=workers, progress=False):
        assert o.status == "ok", f"{o.path}: {o.reason}"
        if len(digests) in keep:
            kept[len(digests)] = o.image
        digests.append(_digest(o.image))
    return digests, kept


def reading(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="nifti_read_") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        paths = write_volumes(root, args.n, args.shape)
        print(
            f"wrote {args.n} volumes of {'x'.join(map(str, args.shape))} in {time.perf_counter() - t:.1f} s"
        )
        keep = set(range(0, args.n, max(1, args.n // 5)))
        # Warm the page cache and the imports for both, untimed.
        nibabel_loop(paths[: min(5, len(paths))])
        fairaudit_read(root, 1)
        times_base, times_ours = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            base_digests, base_kept = nibabel_loop(paths, keep)
            times_base.append(time.perf_counter() - t)
            t = time.perf_counter()
            our_digests, our_kept = fairaudit_read(root, args.workers, keep)
            times_ours.append(time.perf_counter() - t)
            assert len(our_digests) == args.n, f"{args.n - len(our_digests)} files not read"
            np.testing.assert_array_equal(our_digests, base_digests)
            for k in keep:
                np.testing.assert_array_equal(our_kept[k], base_kept[k])
        t_base, t_ours = min(times_base), min(times_ours)
        print(f"platform: {platform.platform()}, {os.cpu_count()} CPUs; workers {args.workers}")
        print(
            f"best of {args.repeat} runs each, alternating; every volume's digest and 5 whole volumes checked equal"
        )
        print(f"(a) serial nibabel loop:        {t_base:7.2f} s  {args.n / t_base:8.1f} files/s")
        print(
            f"(b) fairaudit --workers {args.workers:<3}:    {t_ours:7.2f} s  {args.n / t_ours:8.1f} files/s"
        )
        print(f"ratio (a)/(b): {t_base / t_ours:.2f}  (target >= 1.5)")


def _masks(root: Path, n: int, shape: tuple[int, int, int]) -> Path:
    import nibabel as nib
    from scipy import ndimage

    for name in ("truth", "pred"):
        (root / name).mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        truth = _sphere(shape, k)
        pred = ndimage.binary_dilation(truth) if k % 2 else truth
        for name, m in (("truth", truth), ("pred", pred)):
            nib.save(
                nib.Nifti1Image(m.astype(np.uint8), _affine(shape, False)),
                str(root / name / f"c{k:04d}.nii.gz"),
            )
        rows.append([f"c{k:04d}", "ab"[k % 2]])
    demo = root / "demo.csv"
    with demo.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "group"], *rows])
    return demo


def memory(args: argparse.Namespace) -> None:
    from scale import _Sampler

    with tempfile.TemporaryDirectory(prefix="nifti_mem_") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        demo = _masks(root, args.volumes, args.memory_shape)
        shape = "x".join(map(str, args.memory_shape))
        print(f"wrote {args.volumes} mask pairs of {shape} in {time.perf_counter() - t:.1f} s")
        cmd = [sys.executable, "-m", "fairaudit", "audit", "--task", "segmentation", "--masks", str(root / "truth"),
               "--pred-masks", str(root / "pred"), "--demographics", str(demo), "--id-column", "path",
               "--attribute", "group", "--cluster-column", "none", "--min-group-size", "2", "--bootstrap",
               str(args.bootstrap), "--workers", str(args.workers), "--format", "json", "--quiet",
               "--out", str(root / "out")]  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        sampler = _Sampler(proc.pid, 0.05)
        sampler.start()
        _, err = proc.communicate()
        sampler.stop.set()
        sampler.join()
        elapsed = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"the audit failed (exit {proc.returncode}):\n{err[-3000:]}")
        print(f"audit of {args.volumes} volumes of {shape}, {args.workers} workers: {elapsed:.1f} s")
        print(f"peak PSS of the process tree: {sampler.peak_pss / 2**20:.0f} MiB "
              f"(peak RSS {sampler.peak_rss / 2**20:.0f} MiB); target < 2048 MiB")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="volumes to read (default 1000)")
    ap.add_argument("--shape", type=_shape, default=(128, 128, 64), help="volume shape (default 128x128x64)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="fairaudit's worker processes")
    ap.add_argument("--memory", action="store_true", help="the memory check of a 3-D audit instead")
    ap.add_argument(
        "--repeat", type=int, default=3, help="timed runs of each reader, alternating (best taken)"
    )
    ap.add_argument("--volumes", type=int, default=200, help="--memory: mask pairs (default 200)")
    ap.add_argument("--memory-shape", type=_shape, default=(256, 256, 128), help="--memory: mask shape")
    ap.add_argument("--bootstrap", type=int, default=200, help="--memory: the audit's --bootstrap")
    args = ap.parse_args()
    memory(args) if args.memory else reading(args)


if __name__ == "__main__":
    main()
