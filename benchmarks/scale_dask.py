"""`--scheduler`: one local process against a Dask LocalCluster of 1 and 2 workers.

One synthetic cohort (fairaudit.sample, --n files of --image-size pixels a side, in a
temporary folder or under --work-dir) is audited with the bundled classifier, in a
subprocess exactly as a user runs it, four ways in the same run:

- (a) one local process: `--workers 1` (decode, preprocessing and the model in the audit's
  own process): the baseline;
- (b) `--scheduler local:1`: a LocalCluster of one worker process does the per-file work;
- (c) `--scheduler local:2`: two worker processes;
- (d) for reference, the local default: `--workers 2` decode processes.

It prints, per way, the wall time of the whole command (start-up, cluster start, decode,
inference, statistics, reports), files/s, the ratio to (a), and whether results.json is
identical to (a)'s apart from `created` (issue 8: it must be). Each way runs --repeat
times; the best time counts.

    .venv/bin/python benchmarks/scale_dask.py [--n 2000] [--image-size 256] [--repeat 2]
        [--bootstrap 200] [--work-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "bundled:cxr_finding_classifier"
WAYS = {
    "(a) one local process (--workers 1)": ["--workers", "1"],
    "(b) LocalCluster, 1 worker (--scheduler local:1)": ["--scheduler", "local:1"],
    "(c) LocalCluster, 2 workers (--scheduler local:2)": ["--scheduler", "local:2"],
    "(d) local, 2 decode processes (--workers 2)": ["--workers", "2"],
}


def _generate(root: Path, n: int, size: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "fairaudit", "sample-data", str(root), "--n", str(n), "--size", str(size),
         "--seed", "0"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _audit(root: Path, out: Path, extra: list[str], bootstrap: int) -> float:
    cmd = [
        sys.executable, "-m", "fairaudit", "audit", str(root / "images"), "--model", MODEL,
        "--demographics", str(root / "demographics.csv"), "--labels", str(root / "labels.csv"),
        "--label-column", "finding", "--attribute", "sex", "--attribute", "race",
        "--bootstrap", str(bootstrap), "--device", "cpu", "--quiet", "--salt", "bench",
        "--format", "json", "--out", str(out), *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"audit failed (exit {proc.returncode}): {' '.join(extra)}\n{proc.stderr}")
    return seconds


def _results(out: Path) -> dict:
    data = json.loads((out / "results.json").read_text())
    data.pop("created", None)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="files in the cohort")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise SystemExit("needs dask.distributed: pip install 'fairaudit-imaging[dask]'") from None

    work = Path(tempfile.mkdtemp(prefix="fairaudit-dask-", dir=args.work_dir))
    try:
        cohort = work / "cohort"
        _generate(cohort, args.n, args.image_size)
        print(f"cohort: {args.n} files of {args.image_size}x{args.image_size}, model {MODEL}")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        rows = []
        baseline = None
        for name, extra in WAYS.items():
            # The same --out for every way, as a user reruns a command: the recorded command
            # (which leaves out --scheduler and --workers) is then the same too.
            best = min(_audit(cohort, work / "out", extra, args.bootstrap) for _ in range(args.repeat))
            results = _results(work / "out")
            baseline = baseline or (best, results)
            rows.append((name, best, args.n / best, baseline[0] / best, results == baseline[1]))
        print(f"{'way':52} {'seconds':>8} {'files/s':>8} {'vs (a)':>7}  same results.json as (a)")
        for name, seconds, rate, ratio, same in rows:
            print(f"{name:52} {seconds:8.2f} {rate:8.1f} {ratio:6.2f}x  {'yes' if same else 'NO'}")
        by = {r[0][:3]: r for r in rows}
        print(f"ratio (c)/(b), 2 workers over 1: {by['(c)'][2] / by['(b)'][2]:.2f}x")
        if not all(r[4] for r in rows):
            raise SystemExit("results.json differs between the ways: a bug (issue 8)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
