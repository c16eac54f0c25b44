"""DICOM decoding speed: fairaudit's parallel reader against a plain serial pydicom loop.

Generates N realistic files (512 x 512, 12-bit MONOCHROME2 CT slices with
RescaleSlope/Intercept: a third uncompressed, a third RLE Lossless, a third JPEG-LS
Lossless) into a temporary folder, then times in this one run, on the same files:

  (a) baseline: `for p in files: ds = pydicom.dcmread(p);
      apply_modality_lut(ds.pixel_array, ds).astype(np.float32)`
  (a') the same loop with the decoding plugin fairaudit prefers (pyjpegls, i.e. CharLS,
      for JPEG-LS; pydicom's default tries pylibjpeg's libjpeg first), so that b/a'
      isolates what the worker processes add;
  (b) fairaudit: `iter_outcomes(root, header_only=False, workers=W)` (W = CPU count),
      which also masks padding, checks sizes and truncation and picks header fields;
  (c) fairaudit header-only scan: `iter_outcomes(root, header_only=True, workers=W)`.

It prints files/s for each, the ratios b/a (target: >= 1.7 on 2 cores), b/a' and c/b. Each
timing is the best of --repeat runs (the files are in the page cache for all of them).

    .venv/bin/python benchmarks/dicom_decode.py [--n 400] [--size 512] [--workers W] [--repeat 3]
        [--mix native,rle,jpegls]   (also: j2k, JPEG 2000 lossless)
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench")


def phantom(size: int, rng: np.random.Generator) -> np.ndarray:
    """A CT-like slice in stored values (HU + 1024): air, a body ellipse, organs, noise."""
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    hu = np.full((size, size), -1000.0)
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    hu[body] = 40.0
    for _ in range(4):
        cx, cy, r = rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3), rng.uniform(0.05, 0.2)
        hu[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = rng.uniform(-100, 300)
    hu[(x / 0.75) ** 2 + (y / 0.55) ** 2 > 1] += 0  # keep the rim
    ring = body & ((x / 0.8) ** 2 + (y / 0.6) ** 2 > 1)
    hu[ring] = 900.0  # a bony rim
    hu += rng.normal(0.0, 12.0, hu.shape) * body
    return np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16)


MIXES = {"native": None, "rle": "RLELossless", "jpegls": "JPEGLSLossless", "j2k": "JPEG2000Lossless"}


def generate(
    root: Path, n: int, size: int, seed: int = 0, mix: tuple[str, ...] = ("native", "rle", "jpegls")
) -> list[Path]:
    import pydicom.uid
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    series = generate_uid()
    paths = []
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = series
        ds.SeriesInstanceUID = series
        ds.PatientID = f"BENCH{i // 50:03d}"
        ds.Modality = "CT"
        ds.Manufacturer = "Synthetic"
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 2.5
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-180.0, -180.0, 2.5 * i]
        ds.InstanceNumber = i + 1
        ds.PixelData = phantom(size, rng).tobytes()
        syntax = MIXES[mix[i % len(mix)]]
        if syntax is not None:
            ds.compress(getattr(pydicom.uid, syntax))
        path = root / f"slice_{i:05d}"  # no .dcm suffix: recognized by content
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def baseline(paths: list[Path]) -> float:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    t0 = time.perf_counter()
    for p in paths:
        ds = pydicom.dcmread(p)
        apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    return time.perf_counter() - t0


def baseline_same_plugins(paths: list[Path]) -> float:
    """(a) with the decoding plugin fairaudit prefers (CharLS for JPEG-LS): like for like."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, pixel_array

    from fairaudit.io.dicom._decode import _PREFERRED_PLUGINS

    t0 = time.perf_counter()
    for p in paths:
        ds = pydicom.dcmread(p)
        plugin = _PREFERRED_PLUGINS.get(str(ds.file_meta.TransferSyntaxUID), "")
        apply_modality_lut(pixel_array(ds, decoding_plugin=plugin), ds).astype(np.float32)
    return time.perf_counter() - t0


def fairaudit_run(root: Path, header_only: bool, workers: int, expected: int) -> float:
    from fairaudit.io.dicom import iter_outcomes

    t0 = time.perf_counter()
    ok = 0
    for outcome in iter_outcomes(root, header_only=header_only, workers=workers, progress=False):
        ok += outcome.status == "ok"
    elapsed = time.perf_counter() - t0
    if ok != expected:
        raise SystemExit(f"fairaudit read {ok} of {expected} files")
    return elapsed


def best(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="number of files")
    ap.add_argument("--size", type=int, default=512, help="rows = columns")
    ap.add_argument("--workers", type=int, default=None, help="default: the CPU count")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs per timing")
    ap.add_argument(
        "--mix",
        default="native,rle,jpegls",
        help=f"transfer syntaxes, in turn, from {', '.join(MIXES)} (default: native,rle,jpegls)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("fairaudit").setLevel(logging.WARNING)

    from fairaudit.io.dicom import workers_default

    workers = args.workers or workers_default()
    import pydicom

    log.info(
        "machine: %s, %d CPUs (%d usable), Python %s, pydicom %s",
        platform.processor() or platform.machine(),
        os.cpu_count(),
        workers_default(),
        platform.python_version(),
        pydicom.__version__,
    )
    with tempfile.TemporaryDirectory(prefix="fairaudit-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        mix = tuple(m.strip() for m in args.mix.split(",") if m.strip())
        paths = generate(root, args.n, args.size, mix=mix)
        mb = sum(p.stat().st_size for p in paths) / 2**20
        log.info(
            "data: %d files of %dx%d 12-bit CT (%s in turn), %.0f MB, generated in %.1f s",
            args.n,
            args.size,
            args.size,
            ", ".join(mix),
            mb,
            time.perf_counter() - t0,
        )
        a = best(lambda: baseline(paths), args.repeat)
        a2 = best(lambda: baseline_same_plugins(paths), args.repeat)
        b = best(lambda: fairaudit_run(root, False, workers, args.n), args.repeat)
        c = best(lambda: fairaudit_run(root, True, workers, args.n), args.repeat)
        b1 = best(lambda: fairaudit_run(root, False, 1, args.n), max(1, args.repeat - 1))
    n = args.n
    log.info("(a) serial pydicom loop (dcmread + pixel_array + modality LUT): %.0f files/s", n / a)
    log.info(
        "(a') the same loop with fairaudit's decoding plugins (pyjpegls for JPEG-LS): %.0f files/s", n / a2
    )
    log.info("(b) fairaudit decode, %d workers: %.0f files/s", workers, n / b)
    log.info("    fairaudit decode, 1 worker (in-process): %.0f files/s", n / b1)
    log.info("(c) fairaudit header-only scan, %d workers: %.0f files/s", workers, n / c)
    log.info("ratio b/a (decode vs plain serial pydicom): %.2fx (target >= 1.7x on 2 cores)", a / b)
    log.info("ratio b/a' (parallel gain alone, same decoders): %.2fx", a2 / b)
    log.info("ratio c/b (header-only vs decode): %.1fx", b / c)


if __name__ == "__main__":
    main()
