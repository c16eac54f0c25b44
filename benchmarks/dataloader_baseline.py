"""The plain baseline a user writes in twenty lines: a torch DataLoader over DICOM files.

One worker process per CPU, batch 32, no model: each item is `pydicom.dcmread`, the
modality LUT, a clip to the 1st-99th percentile scaled to [0, 1], and an area resize to
64 x 64 (`torch.nn.functional.interpolate(mode="area")`). Prints one JSON line: files,
seconds of the loop (`loop_s`, from the first batch requested to the last received) and
of the whole process from its start (`process_s`: interpreter, imports, workers).
benchmarks/scale.py runs it beside the audit on the same files (issue 25's baseline).

    .venv/bin/python benchmarks/dataloader_baseline.py FOLDER [--workers W] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import time

PROCESS_START = time.perf_counter()

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import torch  # noqa: E402
from pydicom.pixels import apply_modality_lut  # noqa: E402


class DicomFolder(torch.utils.data.Dataset):
    """Every *.dcm under a folder, prepared as a classifier's 64 x 64 input."""

    def __init__(self, root: str) -> None:
        self.files = sorted(
            os.path.join(d, f) for d, _, names in os.walk(root) for f in names if f.endswith(".dcm")
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        ds = pydicom.dcmread(self.files[i])
        image = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        low, high = np.percentile(image, [1, 99])
        image = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
        x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
        return torch.nn.functional.interpolate(x, size=(64, 64), mode="area")[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = DicomFolder(args.folder)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, num_workers=args.workers)
    start = time.perf_counter()
    n = sum(len(batch) for batch in loader)
    end = time.perf_counter()
    out = {"files": n, "loop_s": end - start, "process_s": end - PROCESS_START, "workers": args.workers}
    print(json.dumps(out))  # noqa: T201 - the benchmark's one output line


if __name__ == "__main__":
    main()
