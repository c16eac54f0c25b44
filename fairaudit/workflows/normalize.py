"""`fairaudit normalize` as a library call: normalize a DICOM folder and report group shifts.

Two passes over the folder (decoding twice keeps memory flat for any cohort size):
1. decode, compute each image's statistics before normalization, pool the site's pixels
   (--per-site) and the histogram range;
2. decode, normalize (the image's own statistics, or its site's pooled ones, or the
   global ones for a site not seen in pass 1), compute the statistics after, apply the
   spatial steps, write `images/<name>.npy` (float32) with `images/<name>.json` (the exact
   parameters) and `previews/<name>.png`.
Inputs are only read. Statistics are computed on the original grid, over the counted
pixels (no PixelPaddingValue, inside --roi when given), so before and after describe the
same pixels. Then, per attribute: group means with intervals, disparities, Kruskal-Wallis
tests (one corrected family), and whether normalization narrowed or widened each gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit._util.privacy import IdHasher, use_for_logs
from fairaudit._version import __version__
from fairaudit.cohort.images import (
    CohortOutcome,
    CohortRequest,
    Demographics,
    check_dicom_dir,
    excluded_counts,
    file_row,
    no_usable_image,
    outcome_id,
    safe_name,
    write_manifest,
)
from fairaudit.errors import InputError, arg
from fairaudit.preprocess._imagestats import STATISTICS, image_statistics
from fairaudit.preprocess._normalize import Normalizer, NormParams, SiteNormalizer, counted, transform
from fairaudit.preprocess._spatial import align_rigid, register_rigid, resample_to_spacing, resize_to_shape
from fairaudit.stats._multitest import adjust_family
from fairaudit.stats.image_groups import (
    Groups,
    change,
    check_options,
    describe,
    draws,
    to_jsonable,
)

log = logging.getLogger(__name__)

HIST_BINS = 64
AFTER_RANGE = {
    "percentile": (-0.25, 1.25),
    "zscore": (-4.0, 4.0),
    "robust_zscore": (-4.0, 4.0),
    "adaptive_histogram": (0.0, 1.0),
}
STAT_LABELS = {
    "mean": "mean",
    "std": "standard deviation",
    "p1": "1st percentile",
    "p99": "99th percentile",
    "entropy": "entropy",
    "noise": "noise estimate",
}


@dataclass
class NormalizeRequest(CohortRequest):
    dicom_dir: Path
    out: Path
    method: str
    log_transform: bool = False
    clip_limit: float = 0.01
    percentiles: tuple[float, float] = (1.0, 99.0)
    per_site: bool = False
    site_column: str = "site"
    target_shape: tuple[int, ...] | None = None
    target_spacing: tuple[float, ...] | None = None
    keep_aspect: bool = True
    demographics: Path | None = None
    attributes: list[str] = field(default_factory=list)
    id_column: str | None = None
    roi: Path | None = None
    site_normalizer: Path | None = None  # a saved site_normalizer.json to apply instead of fitting
    align_to: Path | None = None  # a 2-D template (.npy, or a DICOM file): rigid registration
    previews: bool = True


NormalizeOutcome = CohortOutcome


@dataclass
class _Image:
    rel: str
    name: str
    site: str | None
    demo_row: int | None
    before: dict[str, float]
    after: dict[str, float] = field(default_factory=dict)
    hist_before: np.ndarray | None = None
    hist_after: np.ndarray | None = None


def _validate(req: NormalizeRequest) -> None:
    check_dicom_dir(req.dicom_dir)
    req.decode_options()  # --max-pixels and --max-file-size, checked before --out is touched
    if req.attributes and req.demographics is None:
        raise InputError(
            f"{arg('attributes')} needs {arg('demographics')} (the CSV that holds the attribute columns).",
            argument="demographics",
        )
    if req.demographics is not None and not req.attributes:
        raise InputError(
            f"{arg('demographics')} needs at least one {arg('attributes')} to report by.",
            argument="attributes",
        )
    check_options(req.correction, req.ci_level, req.bootstrap)
    out = Path(req.out).resolve()
    src = Path(req.dicom_dir).resolve()
    if out == src or src in out.parents:
        raise InputError(
            f"{arg('out')} is inside {arg('dicom_dir')}: normalize never writes next to its inputs.",
            file=str(req.out),
            hint="Choose an output folder outside the DICOM folder.",
            argument="out",
        )


def _roi_for(roi_index: Any, key: str, image: np.ndarray) -> tuple[np.ndarray | None, str]:
    if roi_index is None:
        return None, ""
    from fairaudit.io.masks import MaskReadError, read_mask

    path = roi_index.files.get(key)
    if path is None:
        return None, "no --roi mask for this image"
    try:
        m = read_mask(path)
    except MaskReadError as exc:
        return None, f"--roi mask: {exc}"
    if m.shape != image.shape:
        return None, f"--roi mask shape {m.shape} differs from the image's {image.shape}"
    return m, ""


def _hist(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.histogram(np.clip(values, lo, hi), bins=HIST_BINS, range=(lo, hi))[0].astype(np.int64)


def run_normalize(req: NormalizeRequest) -> NormalizeOutcome:
    """Normalize every image of req.dicom_dir into req.out and build normalize.json.

    --out is checked before the work, and the files reach it as one set
    (fairaudit._util.atomic.output_set): images/ and previews/ with the reports."""
    from fairaudit._util.atomic import output_set

    _validate(req)
    inputs = [req.dicom_dir, req.demographics, req.roi, req.site_normalizer, req.align_to]
    folders = ("images", "previews") if req.previews else ("images",)
    with output_set(req.out, protect=[p for p in inputs if p is not None], folders=folders) as outs:
        return _run_normalize(req, outs)


def _run_normalize(req: NormalizeRequest, outs: Any) -> NormalizeOutcome:
    from fairaudit.io.dicom import iter_outcomes

    normalizer = Normalizer(
        req.method, log_transform=req.log_transform, percentiles=req.percentiles, clip_limit=req.clip_limit
    )
    hasher = IdHasher(req.salt, req.keep_ids)
    use_for_logs(hasher)  # log lines name files as the outputs do
    loaded = None
    if req.site_normalizer is not None:
        loaded = SiteNormalizer.load(req.site_normalizer)
        if (
            loaded.normalizer.method != normalizer.method
            or loaded.normalizer.log_transform != normalizer.log_transform
        ):
            raise InputError(
                f"was fitted with {arg('method')} {loaded.normalizer.method}"
                f"{' ' + arg('log_transform') if loaded.normalizer.log_transform else ''}; pass the same options.",
                file=str(req.site_normalizer),
                argument="site_normalizer",
            )
        req.per_site = True
    demo = None
    if req.demographics is not None:
        extra = [req.site_column] if req.per_site else []
        demo = Demographics.read(req.demographics, req.attributes, req.id_column, extra)
    elif req.per_site:
        raise InputError(
            f"{arg('per_site')} needs {arg('demographics')} with the {arg('site_column')} (default 'site').",
            argument="per_site",
        )
    roi_index = None
    if req.roi is not None:
        from fairaudit.io.masks import index_masks

        roi_index = index_masks(req.roi, argument="roi")
    id_col = demo.id_column if demo is not None else "sop_instance_uid"

    manifest: dict[str, dict[str, Any]] = {}
    images: dict[str, _Image] = {}
    site_norm = loaded or (SiteNormalizer(normalizer, seed=req.seed) if req.per_site else None)
    lo_before, hi_before = np.inf, -np.inf

    # ---- pass 1: statistics before, site pools
    for o in iter_outcomes(
        Path(req.dicom_dir),
        header_only=False,
        workers=req.workers,
        progress=req.progress,
        options=req.decode_options(),
    ):
        row = manifest[o.path] = file_row(o, hasher=hasher)
        if o.status != "ok" or o.image is None:
            continue
        key = outcome_id(o, id_col)
        row["id"] = hasher(key) if key else ""
        roi, why = _roi_for(roi_index, key, o.image)
        if why:
            row["status"], row["reason"] = "excluded", why
            continue
        keep = counted(o.image, o.padding_mask, roi)
        if not keep.any():
            row["status"], row["reason"] = "excluded", "no counted pixel (all padding or outside the ROI)"
            continue
        demo_row, site = None, None
        if demo is not None:
            demo_row, why = demo.lookup(key)
            if demo_row is None:
                row["reason"] = f"normalized; not in the group statistics: {why}"
            elif req.per_site:
                site = demo.value(demo_row, demo.extra[req.site_column])
        if req.per_site and site_norm is not None and loaded is None:
            site_norm.add(site, o.image, o.padding_mask, roi)
        st = image_statistics(o.image, keep)
        lo_before, hi_before = min(lo_before, st["p1"]), max(hi_before, st["p99"])
        images[o.path] = _Image(o.path, safe_name(o.path, hasher), site, demo_row, st)
    if not images:
        no_usable_image(outs, list(manifest.values()), len(manifest), req.dicom_dir)
    if site_norm is not None and loaded is None:
        site_norm.finalize()
    if not hi_before > lo_before:
        hi_before = lo_before + 1.0
    template = _template(req.align_to) if req.align_to is not None else None
    lo_after, hi_after = AFTER_RANGE[normalizer.method]
    if normalizer.log_transform and normalizer.method == "adaptive_histogram":
        lo_after, hi_after = 0.0, 1.0

    out = outs.staging  # moved into --out with the reports (fairaudit._util.atomic.output_set)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if req.previews:
        (out / "previews").mkdir(parents=True, exist_ok=True)
    notes: dict[str, int] = {}

    # ---- pass 2: normalize, statistics after, spatial steps, outputs
    from fairaudit._util.atomic import atomic_path, atomic_write_bytes, atomic_write_text
    from fairaudit.report.svg import png_bytes

    for o in iter_outcomes(
        Path(req.dicom_dir),
        header_only=False,
        workers=req.workers,
        progress=req.progress,
        options=req.decode_options(),
    ):
        img = images.get(o.path)
        if img is None or o.image is None:
            continue
        key = outcome_id(o, id_col)
        roi, _ = _roi_for(roi_index, key, o.image)
        keep = counted(o.image, o.padding_mask, roi)
        if site_norm is not None:
            params = site_norm.params_for(img.site)
        else:
            params = normalizer.fit_values(np.asarray(o.image)[keep])
        y64 = transform(o.image.astype(np.float64), params)  # statistics without float32 rounding
        img.after = image_statistics(y64, keep)
        y = y64.astype(np.float32)
        img.hist_before = _hist(o.image[keep], lo_before, hi_before)
        img.hist_after = _hist(y[keep], lo_after, hi_after)
        z, steps, spacing = y, [], o.spacing
        pad_value = float(y[keep].min())
        if req.target_spacing is not None:
            if spacing is None or len(spacing) != z.ndim or not all(np.isfinite(spacing)):
                notes["not resampled: the file has no usable pixel spacing"] = (
                    notes.get("not resampled: the file has no usable pixel spacing", 0) + 1
                )
                steps.append({"step": "resample", "skipped": "no usable pixel spacing in the file"})
            elif len(req.target_spacing) != z.ndim:
                steps.append(
                    {
                        "step": "resample",
                        "skipped": f"--target-spacing has {len(req.target_spacing)} axes, the image {z.ndim}",
                    }
                )
            else:
                z, rec = resample_to_spacing(z, spacing, req.target_spacing)
                spacing = tuple(rec["output_spacing"])
                steps.append(rec)
        if req.target_shape is not None:
            if len(req.target_shape) != z.ndim:
                manifest[o.path].update(
                    status="excluded",
                    reason=f"--target-shape has {len(req.target_shape)} axes, the image {z.ndim}",
                )
                img.after = {}
                continue
            z, rec = resize_to_shape(z, req.target_shape, keep_aspect=req.keep_aspect, pad_value=pad_value)
            if spacing is not None and rec["resized_shape"] != rec["input_shape"]:
                spacing = tuple(
                    s * i / r
                    for s, i, r in zip(spacing, rec["input_shape"], rec["resized_shape"], strict=True)
                )
            steps.append(rec)
        if template is not None:
            if z.shape != template.shape:
                manifest[o.path].update(
                    status="excluded",
                    reason=f"shape {z.shape} differs from the --align-to template's {template.shape}; "
                    "pass --target-shape with the template's shape",
                )
                img.after = {}
                continue
            reg = register_rigid(z, template)
            z = align_rigid(z, reg, cval=pad_value)
            steps.append({"step": "align_rigid", "template": Path(req.align_to).name, **reg.to_dict()})
        with atomic_path(out / "images" / f"{img.name}.npy") as tmp:
            np.save(tmp, np.ascontiguousarray(z, dtype=np.float32), allow_pickle=False)
        sidecar = _sidecar(params, steps, o, keep, z, spacing, req)
        atomic_write_text(out / "images" / f"{img.name}.json", _dumps(sidecar))
        if req.previews:
            atomic_write_bytes(out / "previews" / f"{img.name}.png", png_bytes(z))
        row = manifest[o.path]
        row["status"] = "normalized"
        row["output"] = f"images/{img.name}.npy"

    done = [i for i in images.values() if i.after]
    if not done:
        from collections import Counter

        write_manifest(out, list(manifest.values()))
        outs.publish(only=("manifest.csv",))  # the reasons, without a normalize.json
        why, count = Counter(r["reason"] for r in manifest.values() if r["status"] == "excluded").most_common(
            1
        )[0]
        raise InputError(
            f"no image could be normalized; {count} of {len(manifest)} files: {why} "
            f"(see {outs.final(out / 'manifest.csv')})."
        )
    results = _results(
        req, normalizer, site_norm, done, manifest, demo, (lo_before, hi_before), (lo_after, hi_after), notes
    )
    from fairaudit.report.image_reports import image_reports
    from fairaudit.report.writers import write_reports

    rows = list(manifest.values()) + (demo.manifest_rows(hasher) if demo is not None else [])
    files = write_reports(
        results, out, req.formats, image_reports("normalize.json", "normalize", _plots(results))
    )
    files["manifest"] = write_manifest(out, rows)
    if site_norm is not None:
        files["site_normalizer"] = site_norm.save(out / "site_normalizer.json")
    return NormalizeOutcome(results, {k: outs.final(p) for k, p in files.items()})


def _template(path: Path) -> np.ndarray:
    """The --align-to template: a 2-D .npy array (allow_pickle=False) or a DICOM file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found.", file=str(path), hint="Pass a 2-D .npy array or a DICOM file.")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot be read as a .npy array: {exc}", file=str(path)) from None
    else:
        from fairaudit.io.dicom import read_file

        o = read_file(path, path.parent, header_only=False)
        if o.status != "ok" or o.image is None:
            raise InputError(f"cannot be used as a template: {o.status}: {o.reason}", file=str(path))
        arr = o.image
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise InputError(f"a template must be a finite 2-D image, got shape {arr.shape}.", file=str(path))
    return arr.astype(np.float64)


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


def _sidecar(
    params: NormParams,
    steps: list,
    o: Any,
    keep: np.ndarray,
    z: np.ndarray,
    spacing: Any,
    req: NormalizeRequest,
) -> dict[str, Any]:
    formula = "y = (x - loc) / scale"
    inv = "x = y * scale + loc"
    if params.log_transform:
        formula = "y = (sign(x - log_offset) * log1p(|x - log_offset|) - loc) / scale"
        inv = "v = y * scale + loc; x = sign(v) * expm1(|v|) + log_offset"
    if params.method == "adaptive_histogram":
        formula += "; then CLAHE (skimage.exposure.equalize_adapthist) on y clipped to [0, 1]"
        inv = None
    header = o.header or {}
    return {
        "fairaudit_version": __version__,
        "normalization": params.to_dict(),
        "formula": formula,
        "inverse": inv,
        "inverse_note": (
            "the intensity inverse holds pixel by pixel; after spatial steps it gives the original "
            "intensities on the resampled grid (interpolation itself is not undone)"
            if steps
            else None
        ),
        "spatial": steps,
        "input": {
            "shape": list(o.image.shape),
            "spacing": list(o.spacing) if o.spacing else None,
            "padding_pixels": int(o.padding_mask.sum()) if o.padding_mask is not None else 0,
            "counted_pixels": int(keep.sum()),
            "roi": req.roi is not None,
            "modality": header.get("Modality"),
            "photometric_interpretation": header.get("PhotometricInterpretation"),
        },
        "output": {"shape": list(z.shape), "spacing": list(spacing) if spacing else None, "dtype": "float32"},
    }


def _density(counts: np.ndarray, lo: float, hi: float) -> list[float]:
    total = counts.sum()
    width = (hi - lo) / HIST_BINS
    return (counts / (total * width)).tolist() if total else [0.0] * HIST_BINS


def _results(
    req: NormalizeRequest,
    normalizer: Normalizer,
    site_norm: SiteNormalizer | None,
    done: list[_Image],
    manifest: dict[str, dict[str, Any]],
    demo: Demographics | None,
    before_range: tuple[float, float],
    after_range: tuple[float, float],
    notes: dict[str, int],
) -> dict[str, Any]:
    level = req.ci_level
    attrs_out: list[dict[str, Any]] = []
    family: list[dict[str, Any]] = []
    if demo is not None:
        for a_i, (requested, col) in enumerate(zip(req.attributes, demo.attributes, strict=True)):
            members = [(im, demo.value(im.demo_row, col)) for im in done if im.demo_row is not None]
            missing = sum(1 for _, g in members if g is None)
            members = [(im, g) for im, g in members if g is not None]
            if not members:
                attrs_out.append(
                    {
                        "name": requested,
                        "groups": [],
                        "statistics": [],
                        "missing": missing,
                        "summary": f"No image has a value of {requested}.",
                    }
                )
                continue
            groups = Groups.of([g for _, g in members])
            idx_draws = draws(groups, req.bootstrap, req.seed, (a_i,))
            stats_out = []
            for s in STATISTICS:
                vb = np.array([im.before[s] for im, _ in members], dtype=float)
                va = np.array([im.after[s] for im, _ in members], dtype=float)
                db, da = describe(vb, groups, idx_draws, level), describe(va, groups, idx_draws, level)
                ch = change(db, da, level)
                entry = {"statistic": s, "before": db.to_dict(), "after": da.to_dict(), "change": ch}
                family += [entry["before"]["test"], entry["after"]["test"]]
                stats_out.append(entry)
            hb = {
                g: _density(sum(members[i][0].hist_before for i in idx), *before_range)
                for g, idx in zip(groups.names, groups.index, strict=True)
            }
            ha = {
                g: _density(sum(members[i][0].hist_after for i in idx), *after_range)
                for g, idx in zip(groups.names, groups.index, strict=True)
            }
            attrs_out.append(
                {
                    "name": requested,
                    "groups": groups.rows(req.min_group_size),
                    "missing": missing,
                    "statistics": stats_out,
                    "histograms": {
                        "before": {"edges": np.linspace(*before_range, HIST_BINS + 1).tolist(), "groups": hb},
                        "after": {"edges": np.linspace(*after_range, HIST_BINS + 1).tolist(), "groups": ha},
                    },
                }
            )
        adjust_family(family, req.correction, 1 - level)
        for a in attrs_out:
            if a.get("statistics"):
                a["summary"] = _summary_text(a, level)
    from fairaudit.report.image_reports import results_header

    rows = list(manifest.values())
    results = {
        **results_header("normalize", req.command),
        "config": {
            "method": normalizer.method,
            "log_transform": normalizer.log_transform,
            "percentiles": list(normalizer.percentiles),
            "clip_limit": normalizer.clip_limit if normalizer.method == "adaptive_histogram" else None,
            "scope": "site" if site_norm is not None else "image",
            "site_column": req.site_column if site_norm is not None else None,
            "site_normalizer": "loaded"
            if req.site_normalizer is not None
            else ("fitted" if site_norm else None),
            "roi": req.roi is not None,
            "target_shape": list(req.target_shape) if req.target_shape else None,
            "target_spacing": list(req.target_spacing) if req.target_spacing else None,
            "keep_aspect": req.keep_aspect,
            "align_to": Path(req.align_to).name if req.align_to is not None else None,
            "bootstrap": req.bootstrap,
            "ci_level": level,
            "ci_method": "percentile",
            "correction": req.correction,
            "seed": req.seed,
            "min_group_size": req.min_group_size,
        },
        "inputs": {
            "n_files": len(rows),
            "n_normalized": len(done),
            "n_with_demographics": sum(1 for im in done if im.demo_row is not None),
            "excluded": excluded_counts(rows),
            "notes": [{"reason": k, "count": v} for k, v in notes.items()],
        },
        "normalizer": site_norm.to_dict()
        if site_norm is not None
        else {"scope": "image", "note": "each image's own statistics; see its sidecar"},
        "statistics": list(STATISTICS),
        "statistic_labels": STAT_LABELS,
        "attributes": attrs_out,
        "outputs": {"images": "images/", "previews": "previews/" if req.previews else None},
    }
    return to_jsonable(results)


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _summary_text(attr: dict[str, Any], level: float) -> str:
    by: dict[str, list[str]] = {"narrowed": [], "widened": [], "no clear change": [], "undefined": []}
    for s in attr["statistics"]:
        by[s["change"]["verdict"]].append(STAT_LABELS[s["statistic"]])
    parts = []
    if by["narrowed"]:
        parts.append(f"narrowed the gap in {_join(by['narrowed'])}")
    if by["widened"]:
        parts.append(f"widened {'it' if parts else 'the gap'} in {_join(by['widened'])}")
    if by["no clear change"]:
        parts.append(f"made no clear difference in {_join(by['no clear change'])}")
    if by["undefined"]:
        parts.append(f"could not compare {_join(by['undefined'])}")
    text = f"Between {attr['name']} groups, normalization " + "; ".join(parts) + "."
    return (
        f"{text} (Judged by the change in the standardized range of the group means, with its "
        f"{round(100 * level)}% bootstrap interval: narrowed or widened only when the whole interval is "
        "below or above zero and the change is at least 0.1.)"
    )


def _plots(results: dict[str, Any]) -> dict[str, Any]:
    from fairaudit.report.svg import histogram_svg

    plots = {}
    for a in results.get("attributes", []):
        h = a.get("histograms")
        if not h:
            continue
        plots[a["name"]] = {
            "before": histogram_svg(
                h["before"]["edges"], h["before"]["groups"], f"{a['name']}: before", "intensity"
            ),
            "after": histogram_svg(
                h["after"]["edges"], h["after"]["groups"], f"{a['name']}: after", "normalized intensity"
            ),
        }
    return {"plots": plots}
