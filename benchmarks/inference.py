"""Model inference speed and memory: fairaudit's batched inference against a one-image loop.

For each bundled model (default: every one in fairaudit/models/bundled), on CPU, in this
one run, on the same images (the first --n files of sample_data/images):

  model only (the images decoded and prepared beforehand, in memory):
    (a) baseline: the bundle's torch module called on one image at a time, as one writes
        it by hand: `with torch.inference_mode(): for x in images: model(x[None])`
    (a') fairaudit's predictor one image at a time, `predictor.predict(x[None])`: on CPU it
        runs a classifier frozen as TorchScript and optimized for inference (batch norm
        folded, oneDNN) and a U-Net eagerly in channels-last memory format; this separates
        what batching adds from what the runtime adds
    (b) fairaudit: `predictor.predict(batch)` on batches of --batch-size
  end to end (DICOM folder -> probabilities or masks on the original grid):
    (c) baseline: `for f in files: read_file -> prepare_image -> model(x[None]) ->
        sigmoid or argmax (-> restore_mask)`, one process, the plain module
    (d) fairaudit: `run_inference(predictor, folder, batch_size, workers)`: decoding and
        preprocessing in worker processes, batches, masks restored
    (e) baseline: benchmarks/dataloader_baseline.py's torch DataLoader (one worker per CPU,
        batch --batch-size, pydicom read, modality LUT, percentile clip, area resize to
        64 x 64, no model) over the same files: what fairaudit's decode-and-prepare must keep
        up with (issue 25)

`--size S` generates --n images of S x S (`fairaudit sample-data`, seed 0, in a temporary
folder) instead of taking sample_data/'s 112 x 112 files: radiographs are 1024 x 1024 and up.

Each configuration runs in a fresh subprocess, which reports its images/s (best of
--repeat timed passes after one warm-up pass) and its peak resident memory from
`resource.getrusage(RUSAGE_SELF).ru_maxrss` (the process's own pages; the decode
workers of (d) are reported separately as RUSAGE_CHILDREN, the largest single worker),
plus the resident memory right after the model was loaded, so the difference is what
inference itself added. The parent prints b/a (target: >= 3), b/a' and d/c. Every configuration
uses --threads torch threads (default 1: on a machine shared with other jobs, more threads
than free cores makes any timing meaningless).

    .venv/bin/python benchmarks/inference.py [--models bundled:NAME,...] [--n 96]
        [--size 64|512|1024|2048] [--batch-size 32] [--repeat 3] [--threads T] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample_data" / "images"
MODES = ("plain_loop", "loop", "batched", "e2e_loop", "e2e_batched", "dataloader")


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; the peak is in ru_maxrss)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _files(data: Path, n: int) -> list[Path]:
    from fairaudit.io.dicom import scan

    return [Path(p) for p in scan(data)][:n]


def child(args: argparse.Namespace) -> dict:
    """One configuration, in its own process (see the module doc)."""
    import torch

    torch.set_num_threads(args.threads)
    from fairaudit.io.dicom import DecodeOptions, read_file
    from fairaudit.models.loading import load_predictor

    pred = load_predictor(args.model, device="cpu")
    plain = _plain_module(args.model) if args.child in ("plain_loop", "e2e_loop") else None
    data = Path(args.data)
    files = _files(data, args.n)
    rss_loaded = _rss_mb()
    seg = pred.task == "segmentation"
    opts = DecodeOptions(frames="middle")

    def decode(path: Path):
        return read_file(path, data, header_only=False, options=opts)

    if args.child in ("plain_loop", "loop", "batched"):
        outcomes = [decode(p) for p in files]
        xs = [pred.prepare(o.image, o.spacing) for o in outcomes]
        rss_loaded = _rss_mb()

        def once() -> None:
            if args.child == "plain_loop":
                with torch.inference_mode():
                    for x in xs:
                        plain(torch.from_numpy(x[None]))
            elif args.child == "loop":
                for x in xs:
                    pred.predict(x[None])
            else:
                for i in range(0, len(xs), args.batch_size):
                    pred.predict(np.stack(xs[i : i + args.batch_size]))

    elif args.child == "e2e_loop":
        from fairaudit.models.preprocessing import prepare_image, restore_mask

        def once() -> None:
            with torch.inference_mode():
                for p in files:
                    o = decode(p)
                    x = torch.from_numpy(prepare_image(o.image, o.spacing, pred.spec)[None])
                    logits = plain(x)
                    if seg:
                        restore_mask(logits.argmax(dim=1)[0].numpy(), o.image.shape, pred.spec)
                    else:
                        float(torch.sigmoid(logits)[0, 0])

    elif args.child == "dataloader":
        from dataloader_baseline import DicomFolder

        dataset = DicomFolder(str(data))
        dataset.files = [str(p) for p in files]
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=args.batch_size, num_workers=args.workers or len(os.sched_getaffinity(0))
        )

        def once() -> None:
            assert sum(len(batch) for batch in loader) == len(files)

    else:
        import shutil
        import tempfile

        from fairaudit.models.inference import run_inference

        # run_inference reads a folder: the first n files in one, hard-linked (a symbolic link
        # leaving the folder is refused by the reader) or copied across file systems.
        tmp = Path(tempfile.mkdtemp(prefix="fa-bench-"))
        for i, p in enumerate(files):
            try:
                os.link(p, tmp / f"{i:05d}.dcm")
            except OSError:
                shutil.copyfile(p, tmp / f"{i:05d}.dcm")

        def once() -> None:
            kept = []
            run = run_inference(
                pred, tmp, batch_size=args.batch_size, workers=args.workers, progress=False,
                on_mask=(lambda rec, m: kept.append(m.shape)) if seg else None,
            )  # fmt: skip
            assert run.n_predicted == len(files), run.unreadable[:3]

    once()  # warm-up (allocator, thread pools, page cache)
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    if args.child == "e2e_batched":
        shutil.rmtree(tmp, ignore_errors=True)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "model": args.model,
        "name": pred.name,
        "task": pred.task,
        "input": list(pred.spec.get("input_size", [])),
        "mode": args.child,
        "n": len(files),
        "images_per_s": len(files) / best,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": self_peak,
        "peak_rss_workers_mb": child_peak if args.child == "e2e_batched" else None,
    }


def _plain_module(ref: str):
    """The model as a plain torch module (NCHW, eval mode): the hand-written baseline."""
    import torch

    from fairaudit.models.bundle import load_bundle, resolve_bundled

    path = resolve_bundled(ref.split(":", 1)[1]) if ref.startswith("bundled:") else Path(ref)
    if path.is_dir():
        return load_bundle(path, device="cpu").model.eval()
    return torch.jit.load(str(path), map_location="cpu").eval()


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    return (
        f"{platform.machine()} {cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"torch {torch.__version__} (CPU)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated refs; default: every bundled model")
    ap.add_argument("--n", type=int, default=96, help="images (the first N files of sample_data/images)")
    ap.add_argument("--size", type=int, default=None, help="generate --n images of this size instead")
    ap.add_argument("--data", default=str(DATA), help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads, the same in every configuration"
    )
    ap.add_argument("--workers", type=int, default=None, help="decode workers for (d) [CPU count]")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    from fairaudit.models.bundle import list_bundled

    models = args.models.split(",") if args.models else [f"bundled:{n}" for n in list_bundled()]
    if not models:
        sys.exit("no bundled model found (fairaudit/models/bundled is empty): pass --models REF,...")
    print(f"machine: {_machine()}")
    work = None
    if args.size is not None:
        import tempfile

        from fairaudit.sample.cohort import generate_cohort

        work = Path(tempfile.mkdtemp(prefix="fa-bench-size-"))
        generate_cohort(work, n=args.n, size=args.size, seed=0)
        args.data = str(work / "images")
    where = (
        f"{args.n} generated images of {args.size} x {args.size}"
        if work
        else f"first {args.n} files of {DATA.relative_to(ROOT)}"
    )
    print(f"images: {where}; batch {args.batch_size}; threads {args.threads}; best of {args.repeat}")
    rows: dict[tuple[str, str], dict] = {}
    for model in models:
        for mode in args.modes.split(","):
            cmd = [
                sys.executable, __file__, "--child", mode, "--model", model, "--n", str(args.n),
                "--batch-size", str(args.batch_size), "--repeat", str(args.repeat), "--threads", str(args.threads),
                "--data", args.data,
            ]  # fmt: skip
            if args.workers is not None:
                cmd += ["--workers", str(args.workers)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                sys.exit(f"{model} {mode} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows[(model, mode)] = r
            workers = f", workers peak {r['peak_rss_workers_mb']:.0f} MiB" if r["peak_rss_workers_mb"] else ""
            print(
                f"{r['name']:>24} {r['task']:<14} {mode:<12} {r['images_per_s']:9.1f} images/s   "
                f"peak RSS {r['peak_rss_mb']:.0f} MiB (after load {r['rss_after_load_mb']:.0f}){workers}"
            )
    print()
    for model in models:
        name = next((r["name"] for (m, _), r in rows.items() if m == model), model)
        parts = []
        for fast, slow, label in (
            ("batched", "plain_loop", "b/a (model only)"),
            ("batched", "loop", "b/a' (batching alone)"),
            ("e2e_batched", "e2e_loop", "d/c (end to end)"),
            ("e2e_batched", "dataloader", "d/e (against the DataLoader, target >= 1 at 1024)"),
        ):
            if (model, fast) in rows and (model, slow) in rows:
                ratio = rows[(model, fast)]["images_per_s"] / rows[(model, slow)]["images_per_s"]
                parts.append(f"{label} = {ratio:.2f}x")
        print(f"{name}: " + ", ".join(parts) + "   (target b/a >= 3x)")
    if work is not None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
