"""Sliding-window inference of a 3D model: fairaudit's against MONAI's, same model, same volume.

In this one run, on one seeded random volume of --size^3 voxels (default 128) and one small
3D conv net (seeded, saved as TorchScript and loaded through fairaudit's load_predictor):

  (a) MONAI: `monai.inferers.sliding_window_inference(x, roi, sw_batch_size, net,
      overlap, mode)` with the torch module, under torch.inference_mode
  (b) fairaudit: `sliding_window_inference(prepare_volume(v), predictor.forward_raw, roi,
      ...)` (fairaudit.models.sliding_window: numpy blending, the model on --device)

It prints the median seconds of --repeat runs after a warm-up for each, the ratio a/b
(>= 1: fairaudit as fast or faster), the largest difference between the two outputs, and
the peak resident memory of the process. With --device cuda it also runs (b) on CPU and
prints the largest |CPU - CUDA| difference of the blended outputs (must be < 1e-4) and
the share of voxels whose label differs.

    .venv/bin/python benchmarks/sliding_window.py [--size 128] [--roi 64] [--overlap 0.25]
        [--blend gaussian] [--sw-batch-size 4] [--width 8] [--repeat 3] [--threads 1]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402

log = logging.getLogger("benchmarks.sliding_window")


def _net(width: int):  # noqa: ANN202 - a torch module, torch imported lazily
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, width, 3, padding=1), nn.ReLU(),
        nn.Conv3d(width, width, 3, padding=1), nn.ReLU(),
        nn.Conv3d(width, 2, 1),
    ).eval()  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import json

    import torch
    from monai.inferers import sliding_window_inference as monai_swi
    from rich.console import Console

    from fairaudit.models.loading import load_predictor
    from fairaudit.models.sliding_window import sliding_window_inference
    from fairaudit.models.volumes import prepare_volume

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--roi", type=int, default=64)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--blend", default="gaussian", choices=("gaussian", "constant"))
    p.add_argument("--sw-batch-size", type=int, default=4)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    console = Console()
    roi = (a.roi,) * 3
    net = _net(a.width)
    volume = np.random.default_rng(0).normal(size=(a.size,) * 3).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net3d.ts"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.script(net).save(str(path))
        meta = {"task": "segmentation", "preprocessing": {"intensity": "none"}, "spatial_dims": 3}
        meta |= {
            "roi_size": list(roi),
            "sw_overlap": a.overlap,
            "sw_blend": a.blend,
            "sw_batch_size": a.sw_batch_size,
        }
        Path(str(path) + ".json").write_text(json.dumps(meta))
        pred = load_predictor(str(path), a.device, task="segmentation", trust_model=True)
        cpu = (
            load_predictor(str(path), "cpu", task="segmentation", trust_model=True)
            if a.device != "cpu"
            else pred
        )
    dev = torch.device(pred.device)
    net_dev = net.to(dev)
    x = torch.from_numpy(volume[None, None]).to(dev)
    prepared = prepare_volume(volume, pred.spec)

    def theirs() -> np.ndarray:
        with torch.inference_mode():
            out = monai_swi(x, roi, a.sw_batch_size, net_dev, overlap=a.overlap, mode=a.blend)
        return out[0].float().cpu().numpy()

    def ours(p=pred) -> np.ndarray:  # noqa: ANN001
        return sliding_window_inference(
            prepared, p.forward_raw, roi, overlap=a.overlap, mode=a.blend, sw_batch_size=a.sw_batch_size
        )

    t_monai = timed(theirs, a.repeat)
    t_ours = timed(ours, a.repeat)
    diff = float(np.abs(theirs() - ours()).max())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(
        f"sliding window, {a.size}^3 volume, roi {a.roi}^3, overlap {a.overlap}, {a.blend}, "
        f"sw_batch_size {a.sw_batch_size}, width {a.width}, device {pred.device}, {a.threads} thread(s)"
    )
    console.print(f"  (a) MONAI sliding_window_inference: {t_monai:.3f} s")
    console.print(f"  (b) fairaudit:                      {t_ours:.3f} s")
    console.print(f"  ratio a/b: {t_monai / t_ours:.2f} (>= 1: fairaudit as fast or faster)")
    console.print(f"  max |a - b|: {diff:.3g}; peak RSS {peak:.0f} MiB")
    if cpu is not pred:
        on_cpu = sliding_window_inference(
            prepared, cpu.forward_raw, roi, overlap=a.overlap, mode=a.blend, sw_batch_size=a.sw_batch_size
        )
        on_dev = ours()
        labels = float((on_cpu.argmax(0) != on_dev.argmax(0)).mean())
        console.print(
            f"  CPU vs {pred.device}: max |difference| {np.abs(on_cpu - on_dev).max():.3g} (< 1e-4 wanted), "
            f"labels differ on {labels:.2e} of voxels"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
