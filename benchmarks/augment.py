"""Time every augmentation family on a 512 x 512 image and a 64 x 256 x 256 volume.

Beside each family that TorchIO or MONAI also implements, the same operation in those
libraries runs in the same process on the same data (bias field, motion, noise, Rician
noise, Gibbs ringing, elastic deformation), and the ratio baseline / fairaudit is
printed (> 1: fairaudit is faster). Each figure is the median of `--repeats` calls
(3 for the volume, --repeats-3d). torch runs with one thread (the numpy code is
single-threaded too), so the comparison is per core.

    .venv/bin/python benchmarks/augment.py [--repeats 5] [--repeats-3d 3]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from _timing import timed  # noqa: E402

from fairaudit.augment import FAMILIES, Geometric  # noqa: E402


def baselines(image: np.ndarray) -> dict[str, list[tuple[str, Callable[[], object]]]]:
    """family -> [(library transform, call)], on the same data (channel-first tensors)."""
    import monai.transforms as mt
    import torch
    import torchio as tio

    vol = image if image.ndim == 3 else image[None]
    t4 = torch.from_numpy(np.ascontiguousarray(vol.transpose(1, 2, 0)[None]))  # (C, W, H, D) for TorchIO
    subject = tio.ScalarImage(tensor=t4)
    chan = image[None].astype(np.float32)  # (C, H, W) or (C, D, H, W) for MONAI
    tchan = torch.from_numpy(chan)
    three = image.ndim == 3
    elastic = (
        mt.Rand3DElastic(
            sigma_range=(5, 7), magnitude_range=(50, 100), prob=1.0, rotate_range=0.17, scale_range=0.1
        )
        if three
        else mt.Rand2DElastic(
            spacing=(64, 64), magnitude_range=(1, 2), prob=1.0, rotate_range=0.17, scale_range=0.1
        )
    )
    for t in (elastic,):
        t.set_random_state(0)
    return {
        "bias_field": [
            ("TorchIO RandomBiasField", lambda: tio.RandomBiasField(coefficients=0.3)(subject)),
            ("MONAI RandBiasField", lambda: mt.RandBiasField(coeff_range=(0.0, 0.3), prob=1.0)(tchan)),
        ],
        "motion": [
            ("TorchIO RandomMotion (1 movement)", lambda: tio.RandomMotion(num_transforms=1)(subject))
        ],
        "noise": [
            ("TorchIO RandomNoise (Gaussian)", lambda: tio.RandomNoise()(subject)),
            ("MONAI RandGaussianNoise", lambda: mt.RandGaussianNoise(prob=1.0)(tchan)),
        ],
        "rician": [("MONAI RandRicianNoise", lambda: mt.RandRicianNoise(prob=1.0, std=0.05)(tchan))],
        "gibbs": [("MONAI RandGibbsNoise", lambda: mt.RandGibbsNoise(prob=1.0, alpha=(0.3, 0.5))(tchan))],
        "geometric": [
            ("TorchIO RandomElasticDeformation", lambda: tio.RandomElasticDeformation()(subject)),
            (f"MONAI {type(elastic).__name__}", lambda: elastic(tchan)),
        ],
    }


def run(image: np.ndarray, label: str, repeats: int) -> list[tuple[str, str, float, str, float | None]]:
    rows = []
    base = baselines(image)
    transforms = [(m, cls("moderate")) for m, classes in FAMILIES.items() for cls in classes]
    transforms.append(("any", Geometric("moderate")))
    for modality, t in transforms:
        rng = np.random.default_rng(0)
        ours = timed(lambda t=t, rng=rng: t(image, rng), repeats)
        rows.append((label, f"{modality}/{t.family}", ours, "", None))
        for name, call in base.get(t.family, []):
            try:
                theirs = timed(call, repeats)
            except Exception as exc:  # noqa: BLE001 - report, keep benchmarking
                print(f"  {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            rows.append((label, f"  vs {name}", theirs, "", theirs / ours))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--repeats-3d", type=int, default=3)
    args = ap.parse_args()
    import monai
    import scipy
    import torch
    import torchio

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    image = (
        1000 + 800 * np.exp(-((yy - 256) ** 2 + (xx - 256) ** 2) / 2e4) + rng.normal(0, 20, (512, 512))
    ).astype(np.float32)
    volume = np.stack([image[::2, ::2] * (0.8 + 0.4 * k / 63) for k in range(64)]).astype(np.float32)
    start = time.perf_counter()
    rows = run(image, "512x512", args.repeats) + run(volume, "64x256x256", args.repeats_3d)
    print(
        f"# augment benchmark: {platform.machine()}, {platform.processor() or platform.platform()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"torch {torch.__version__} (1 thread), torchio {torchio.__version__}, monai {monai.__version__}"
    )
    print("| data | transform | ms | baseline / fairaudit |")
    print("| --- | --- | ---: | ---: |")
    for label, name, secs, _, ratio in rows:
        print(f"| {label} | {name} | {1000 * secs:.1f} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
