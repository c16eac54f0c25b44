"""Large cohorts: `fairaudit audit DICOM_DIR --model bundled:...` at growing cohort sizes.

For each size in --sizes (default 5000,10000,50000) this generates a synthetic cohort
with fairaudit.sample (--image-size pixels a side; in a temporary folder, or under
--work-dir; never in the repository, and deleted afterwards unless --keep), audits it
with the bundled classifier in a subprocess, exactly as a user runs it, and reports:

- files/s: files of the cohort / wall time of the whole audit command (start-up, decode,
  inference, statistics, reports); and the inference-only rate from results.json;
- peak memory of the whole process tree (the audit and its decode workers), sampled
  every --sample-every seconds from /proc: the sum of PSS (proportional set size: a page
  shared by forked workers counts once in all, so the sum is the memory really used) and,
  as an upper bound, the sum of RSS (shared pages counted once per process); plus the
  exact peak RSS of the largest single process (getrusage of the reaped tree);
- the ratio of each size's files/s and peak PSS to the first size's.

Target (issue 7): peak memory under 2 GB and flat beyond 10,000 files; files/s within
20% of the 5,000-file rate.

Baseline in the same run (issue 25; `--no-baseline` to skip): benchmarks/dataloader_baseline.py
on the same files, a torch DataLoader with one worker per CPU and batch 32 that reads,
applies the modality LUT, clips to percentiles and area-resizes to 64 x 64, with no model.
Printed: its files/s over the loop and over its whole process, and the audit's ratios to
them: the model run's files/s (from the -v log) to the loop's, and the whole audit
command's to the baseline's whole process (targets at 1024 x 1024: >= 1.0 and >= 0.75 for
the classifier, whole command >= 0.4 for `--task segmentation`).

    .venv/bin/python benchmarks/scale.py [--sizes 5000,10000,50000] [--image-size 64]
        [--task classification|segmentation] [--workers W] [--bootstrap 2000]
        [--work-dir DIR] [--keep] [--trace DIR] [--no-baseline]

--bootstrap defaults to the audit's own default (2,000), as a user runs it; with fewer
resamples the statistics fork their worker processes only above some cohort size, which
shows as a one-off step in peak memory between two sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MODEL = "bundled:cxr_finding_classifier"
SEGMENTER = "bundled:cxr_lung_segmenter"


def _tree(root: int) -> list[int]:
    """`root` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in bytes, 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    vals = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Pss:", "Rss:"):
            vals[parts[0]] = int(parts[1]) * 1024
    return vals.get("Pss:", 0), vals.get("Rss:", 0)


class _Sampler(threading.Thread):
    """Peak summed PSS and RSS of a process tree, sampled until stopped."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_pss = self.peak_rss = 0
        self.stop = threading.Event()
        self.samples: list[tuple[float, int, list[int]]] = []  # (time, tree PSS, PSS per process)

    def run(self) -> None:
        while not self.stop.is_set():
            pss = rss = 0
            per = []
            for p in _tree(self.pid):
                a, b = _memory(p)
                pss, rss = pss + a, rss + b
                per.append(a)
            self.samples.append((time.time(), pss, per))
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.stop.wait(self.every)


def _write_trace(path: Path, samples: list[tuple[float, int, list[int]]], log: str) -> None:
    """Every memory sample (wall clock, seconds from the start, tree PSS, PSS of each process,
    the audit first), then the audit's -v log, whose time stamps mark its phases."""
    t0 = samples[0][0] if samples else 0.0
    lines = [
        f"{time.strftime('%H:%M:%S', time.localtime(t))}\t{t - t0:.2f}\t{pss >> 20}\t"
        + ",".join(str(p >> 20) for p in per)
        for t, pss, per in samples
    ]
    path.write_text("clock\tseconds\tpss_tree_mib\tpss_per_process_mib\n" + "\n".join(lines) + "\n\n" + log)


def _generate(root: Path, n: int, size: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fairaudit", "sample-data", str(root), "--n", str(n), "--size", str(size),
         "--seed", "0"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start


def _baseline(root: Path, args: argparse.Namespace) -> dict:
    """benchmarks/dataloader_baseline.py on the cohort's images, with its memory sampled."""
    cmd = [sys.executable, str(Path(__file__).with_name("dataloader_baseline.py")), str(root / "images")]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    sampler = _Sampler(proc.pid, args.sample_every)
    sampler.start()
    stdout, _ = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"the DataLoader baseline failed (exit {proc.returncode})")
    out = json.loads(stdout.strip().splitlines()[-1])
    return {**out, "seconds": seconds, "peak_pss": sampler.peak_pss}


def _audit(root: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, "-m", "fairaudit", "-v", "audit", str(root / "images"),
        "--demographics", str(root / "demographics.csv"), "--attribute", "sex", "--attribute", "race",
        "--bootstrap", str(args.bootstrap), "--device", "cpu", "--quiet", "--out", str(out),
    ]  # fmt: skip
    if args.task == "segmentation":
        cmd += ["--model", SEGMENTER, "--task", "segmentation", "--masks", str(root / "masks")]
    else:
        cmd += ["--model", MODEL, "--labels", str(root / "labels.csv"), "--label-column", "finding"]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "COLUMNS": "400"}
    start = time.perf_counter()
    log = out.parent / f"{out.name}.log"  # stderr to a file: a full pipe would block the audit
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=fh, text=True)
    sampler = _Sampler(proc.pid, args.sample_every)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    err = log.read_text()
    log.unlink()
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)
        _write_trace(args.trace / f"trace_{root.name.removeprefix('cohort_')}.tsv", sampler.samples, err)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"audit failed (exit {proc.returncode}):\n{err}")
    run = json.loads((out / "results.json").read_text())["model"]["run"]
    # The inference-only rate: in results.json, or (when timings are kept out of it) in the -v log.
    rate = run.get("images_per_second")
    found = re.search(r"images_per_second ([0-9.]+)", err) or re.search(
        r"model \S+: (\d+) of \d+ files predicted in ([0-9.]+) s", err
    )
    if rate is None and found:
        rate = float(found.group(1)) if found.lastindex == 1 else int(found.group(1)) / float(found.group(2))
    return {
        "seconds": seconds,
        "inference_per_s": rate,
        "n_predicted": run["n_predicted"],
        "peak_pss": sampler.peak_pss,
        "peak_rss_sum": sampler.peak_rss,
        # ru_maxrss of the reaped child: the largest single process of its tree, in KiB.
        "max_single_rss": usage.ru_maxrss * 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5000,10000,50000", help="cohort sizes, comma-separated")
    ap.add_argument(
        "--image-size", "--size", type=int, default=64, help="pixels a side of the generated images"
    )
    ap.add_argument("--task", choices=("classification", "segmentation"), default="classification")
    ap.add_argument("--no-baseline", action="store_true", help="skip the DataLoader baseline")
    ap.add_argument("--workers", type=int, default=None, help="decode workers (default: CPU count)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the audit")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the audit")
    ap.add_argument("--sample-every", type=float, default=0.2, help="memory sampling period, seconds")
    ap.add_argument("--work-dir", type=Path, default=None, help="where cohorts go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated cohorts")
    ap.add_argument(
        "--trace", type=Path, default=None,
        help="write every memory sample and the audit's log to DIR/trace_N.tsv (where the peak is)",
    )  # fmt: skip
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="fairaudit-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; model {SEGMENTER if args.task == 'segmentation' else MODEL}; images {args.image_size}x{args.image_size}; "
        f"bootstrap {args.bootstrap}; workers {args.workers or 'default'}; work dir {work}"
    )
    print(
        f"{'files':>7} {'gen s':>7} {'audit s':>8} {'files/s':>8} {'infer/s':>8} {'peak PSS MiB':>13} "
        f"{'RSS sum MiB':>12} {'max proc MiB':>13} {'rate/first':>10} {'PSS/first':>9}"
    )
    first: dict | None = None
    try:
        for n in sizes:
            cohort = work / f"cohort_{n}"
            if not (cohort / "demographics.csv").exists():
                gen = _generate(cohort, n, args.image_size)
            else:
                gen = 0.0
            r = _audit(cohort, work / f"out_{n}", args)
            rate = n / r["seconds"]
            r["rate"] = rate
            first = first or r
            print(
                f"{n:>7} {gen:>7.1f} {r['seconds']:>8.1f} {rate:>8.1f} {r['inference_per_s'] or 0:>8.1f} "
                f"{r['peak_pss'] / 2**20:>13.0f} {r['peak_rss_sum'] / 2**20:>12.0f} "
                f"{r['max_single_rss'] / 2**20:>13.0f} {rate / first['rate']:>10.2f} "
                f"{r['peak_pss'] / first['peak_pss']:>9.2f}",
                flush=True,
            )
            if not args.no_baseline:
                b = _baseline(cohort, args)
                loop_rate, whole_rate = b["files"] / b["loop_s"], b["files"] / b["seconds"]
                print(
                    f"{'':>7} DataLoader baseline ({b['workers']} workers, batch 32, no model): "
                    f"loop {loop_rate:.1f} files/s, whole process {whole_rate:.1f} files/s "
                    f"({b['seconds']:.1f} s), peak PSS {b['peak_pss'] / 2**20:.0f} MiB; "
                    f"audit/baseline: model run {(r['inference_per_s'] or 0) / loop_rate:.2f}x, "
                    f"whole command {rate / whole_rate:.2f}x",
                    flush=True,
                )
            if not args.keep:
                shutil.rmtree(cohort, ignore_errors=True)
                shutil.rmtree(work / f"out_{n}", ignore_errors=True)
    finally:
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
