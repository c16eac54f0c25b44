"""`fairaudit sample-data` at full size: images/s against the code before issue 25.

Times, in this one run, `generate_cohort` (what `fairaudit sample-data` runs, without
the interpreter's start-up) into temporary folders:

  (a) baseline: one process, with issue 25's shortcuts switched off: every phantom
      feature evaluated on every pixel (`mu_map(skip_tiles=False)`), scipy's zoom for the
      scatter blur and pydicom's own RLE encoder: the per-image work before issue 25
      (within the in-place arithmetic, which it keeps), on --baseline-n images;
  (b) the new code in one process (FAIRAUDIT_WORKERS=1);
  (c) the new code in W worker processes (default: the CPU count).

It prints images/s and CPU seconds per image of each, the ratios c/a (target: at least
10 images/s at 1024 x 1024 on 2 CPUs) and c/b, the peak resident memory of this process
and of the largest worker, and checks that (b) and (c) wrote the same bytes.

    .venv/bin/python benchmarks/sample_data.py [--n 100] [--size 1024] [--workers W]
        [--baseline-n 20] [--repeat 1]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import platform
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np

log = logging.getLogger("bench")


@contextlib.contextmanager
def before_issue_25() -> Iterator[None]:
    """The per-image work of the code before issue 25: no tile skipping, scipy's zoom,
    pydicom's RLE encoder (each gives the same bytes as its replacement)."""
    from pydicom.uid import JPEGLSLossless
    from scipy import ndimage

    from fairaudit.sample import dicom_writer, phantom

    def zoom(small: np.ndarray, size: int) -> np.ndarray:
        return ndimage.zoom(small, size / 64.0, order=1, mode="nearest", grid_mode=True)[:size, :size]

    with (
        mock.patch.object(phantom._Tiles, "near", lambda self, where: np.arange(where.size)),
        mock.patch.object(phantom, "_zoom_linear", zoom),
        mock.patch.object(
            dicom_writer, "_plugin", lambda uid: "pyjpegls" if uid == JPEGLSLossless else "pydicom"
        ),
    ):
        yield


def cpu_seconds() -> float:
    """User + system time of this process and of its finished worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def generate(out: Path, n: int, size: int, workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one cohort."""
    from fairaudit.sample.cohort import generate_cohort

    c0, t0 = cpu_seconds(), time.perf_counter()
    generate_cohort(out, n, size, seed=0, overwrite=True, workers=workers)
    return time.perf_counter() - t0, cpu_seconds() - c0


def best(out: Path, n: int, size: int, workers: int, repeat: int) -> tuple[float, float]:
    return min(generate(out, n, size, workers) for _ in range(repeat))


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="images in (b) and (c)")
    ap.add_argument("--size", type=int, default=1024, help="pixels a side")
    ap.add_argument("--workers", type=int, default=None, help="(c): default the CPU count")
    ap.add_argument("--baseline-n", type=int, default=20, help="images in (a), the slow baseline")
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs per timing")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("fairaudit").setLevel(logging.WARNING)

    import scipy

    from fairaudit.io.dicom._parallel import workers_default

    workers = args.workers or workers_default()
    log.info(
        "machine: %s, %d CPUs (%d usable), Python %s, numpy %s, scipy %s; load average %.2f",
        platform.processor() or platform.machine(),
        os.cpu_count(),
        workers_default(),
        platform.python_version(),
        np.__version__,
        scipy.__version__,
        os.getloadavg()[0],
    )
    with tempfile.TemporaryDirectory(prefix="fairaudit-bench-") as tmp:
        root = Path(tmp)
        with before_issue_25():
            a, a_cpu = best(root / "a" / "cohort", args.baseline_n, args.size, 1, args.repeat)
        b, b_cpu = best(root / "b" / "cohort", args.n, args.size, 1, args.repeat)
        self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        c, c_cpu = best(root / "c" / "cohort", args.n, args.size, workers, args.repeat)
        worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        same = digests(root / "b" / "cohort") == digests(root / "c" / "cohort")
    na, n = args.baseline_n, args.n
    log.info("%d x %d pixels; (a) %d images, (b) and (c) %d images", args.size, args.size, na, n)
    log.info("(a) before issue 25, 1 process: %.2f images/s (%.3f CPU s per image)", na / a, a_cpu / na)
    log.info("(b) new code, 1 process: %.2f images/s (%.3f CPU s per image)", n / b, b_cpu / n)
    log.info("(c) new code, %d workers: %.2f images/s (%.3f CPU s per image)", workers, n / c, c_cpu / n)
    log.info("ratio c/a: %.1fx (target: >= 10 images/s at 1024 on 2 CPUs)", (n / c) / (na / a))
    log.info("ratio c/b (the workers alone): %.2fx", (n / c) / (n / b))
    log.info("peak RSS: this process %.0f MiB (after (b)), largest worker %.0f MiB", self_peak, worker_peak)
    log.info("(b) and (c) wrote the same bytes: %s", "yes" if same else "NO")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
