"""`fairaudit augment-check` as a library call: a robustness audit per demographic group.

For every decoded image with a demographics row, and each augmentation family of the
modality (plus "geometric" with --geometric), `n_augment` draws are made, each from a
generator seeded by (seed, image path, family, draw), so a result does not depend on
file order or on which other images ran. Then per attribute:

1. Image statistics (mean, SD, p1, p99, entropy, noise; see preprocess._imagestats) are
   computed in the clean image's own unit window ((x - p1) / (p99 - p1) of the clean
   image, the same map for clean and augmented), so shifts are comparable across
   scanners. The shift of an image is the mean over its draws of (augmented - clean);
   per group: mean shift with a bootstrap interval, and a Kruskal-Wallis test of whether
   the shift differs between groups.
2. With a model (--model) and labels (classification) or masks (segmentation): each
   group's performance on clean images and under each family (the mean over draws of
   the metric), the degradation clean - augmented per group with a bootstrap interval
   (the same resampled images on both sides), each group's degradation minus the
   reference group's with an interval, and a Kruskal-Wallis test across groups of the
   per-image degradation (Brier score increase, or Dice decrease). Metrics: AUROC and
   accuracy at 0.5 (classification), mean Dice (segmentation).
All p-values of the report form one family, corrected together (fairaudit.stats._multitest).
AUROC and Dice are fairaudit.stats' own (stats._metrics.auroc, stats._segmentation.dice).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairaudit._util.formatting import fmt_ci, fmt_sig
from fairaudit._util.privacy import IdHasher, use_for_logs
from fairaudit.augment._base import Transform, check_strength
from fairaudit.augment._geometric import Geometric
from fairaudit.augment._physics import describe_params, modality_transforms
from fairaudit.cohort.images import (
    CohortOutcome,
    CohortRequest,
    Demographics,
    check_dicom_dir,
    excluded_counts,
    file_row,
    no_usable_image,
    outcome_id,
    write_manifest,
)
from fairaudit.errors import InputError, arg
from fairaudit.preprocess._imagestats import STATISTICS, image_statistics
from fairaudit.stats._metrics import auroc
from fairaudit.stats._multitest import adjust_family
from fairaudit.stats._resample import generator
from fairaudit.stats._segmentation import dice
from fairaudit.stats._tests import kruskal_omnibus
from fairaudit.stats.image_groups import (
    Groups,
    bootstrap_group_metric,
    check_options,
    describe,
    draws,
    estimate_dict,
    to_jsonable,
)

log = logging.getLogger(__name__)

MAX_EXAMPLES = 4
THRESHOLD = 0.5


@dataclass
class AugmentCheckRequest(CohortRequest):
    dicom_dir: Path
    out: Path
    modality: str
    demographics: Path
    attributes: list[str]
    strength: str = "moderate"
    geometric: bool = False
    flip: bool = False
    n_augment: int = 5
    id_column: str | None = None
    model: str | None = None
    labels: Path | None = None
    label_column: str = "label"
    masks: Path | None = None
    mask_labels: str | None = None
    device: str = "auto"
    trust_model: bool = False  # --trust-model: run a TorchScript file (it is code)
    batch_size: int = 32
    max_images: int | None = None


AugmentCheckOutcome = CohortOutcome


@dataclass
class _Case:
    demo_row: int
    clean: dict[str, float]
    shift: dict[str, dict[str, float]] = field(default_factory=dict)  # family -> statistic -> shift
    label: float | None = None
    score_clean: float | None = None
    scores: dict[str, list[float]] = field(default_factory=dict)  # family -> per draw
    dice_clean: float | None = None
    dice: dict[str, list[float]] = field(default_factory=dict)


def _validate(req: AugmentCheckRequest) -> None:
    check_dicom_dir(req.dicom_dir)
    req.decode_options()  # --max-pixels and --max-file-size, checked before --out is touched
    if not req.attributes:
        raise InputError(
            f"pass at least one {arg('attributes')} (a column of {arg('demographics')}).",
            argument="attributes",
        )
    if req.n_augment < 1:
        raise InputError(f"{arg('n_augment')} must be at least 1, got {req.n_augment}.", argument="n_augment")
    check_options(req.correction, req.ci_level, req.bootstrap)
    if (req.labels is not None or req.masks is not None) and req.model is None:
        raise InputError(
            f"{arg('labels')} and {arg('masks')} are used with {arg('model')}: pass the model to check.",
            argument="model",
        )
    if req.model is not None and req.labels is None and req.masks is None:
        raise InputError(
            f"{arg('model')} needs ground truth: {arg('labels')} labels.csv (classification) or "
            f"{arg('masks')} MASK_DIR (segmentation).",
            argument="labels",
        )


def transforms_for(req: AugmentCheckRequest) -> dict[str, Transform]:
    ts: dict[str, Transform] = dict(modality_transforms(req.modality, req.strength))
    if req.geometric:
        ts["geometric"] = Geometric(req.strength, flip=req.flip)
    return ts


def _unit(x: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return (np.asarray(x, dtype=np.float64) - lo) / (hi - lo)


def _finite_mean(values: np.ndarray | float) -> float:
    """Mean over draws; NaN when undefined (a resample with one class is undefined for every draw)."""
    v = np.atleast_1d(np.asarray(values, dtype=float))
    return float(v.mean()) if v.size and np.isfinite(v).all() else float("nan")


class _Truth:
    """Labels CSV or mask folder, keyed like the demographics."""

    def __init__(self, req: AugmentCheckRequest, id_column: str) -> None:
        self.labels: dict[str, float] = {}
        self.masks = None
        self.mask_labels = None
        if req.labels is not None:
            from fairaudit.io.tables import parse_binary, read_table

            t = read_table(req.labels)
            idc = t.column(id_column, argument="id_column")
            col = t.column(req.label_column, argument="label_column")
            values = parse_binary(t, col, "a label")
            self.labels = {k: float(v) for k, v in zip(t.frame[idc], values, strict=True) if np.isfinite(v)}
        if req.masks is not None:
            from fairaudit.io.masks import index_masks, parse_labels

            self.masks = index_masks(req.masks)
            self.mask_labels = parse_labels(req.mask_labels)

    def label(self, key: str) -> float | None:
        return self.labels.get(key)

    def mask(self, key: str, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
        from fairaudit.io.masks import MaskReadError, read_mask

        if self.masks is None:
            return None, ""
        path = self.masks.files.get(key)
        if path is None:
            return None, "no mask for this image in --masks"
        try:
            m = read_mask(path, self.mask_labels)
        except MaskReadError as exc:
            return None, f"mask: {exc}"
        if m.shape != shape:
            return None, f"mask shape {m.shape} differs from the image's {shape}"
        return m.astype(np.uint8), ""


def run_augment_check(req: AugmentCheckRequest) -> AugmentCheckOutcome:
    """Check every image of req.dicom_dir (see the module doc) and write the reports.

    --out is checked before the work, and the files reach it as one set
    (fairaudit._util.atomic.output_set)."""
    from fairaudit._util.atomic import output_set

    _validate(req)
    inputs = [req.dicom_dir, req.demographics, req.labels, req.masks, req.model]
    with output_set(req.out, protect=[p for p in inputs if p is not None]) as outs:
        return _run_augment_check(req, outs)


def _run_augment_check(req: AugmentCheckRequest, outs: Any) -> AugmentCheckOutcome:
    from fairaudit.io.dicom import iter_outcomes

    check_strength(req.strength)
    ts = transforms_for(req)
    hasher = IdHasher(req.salt, req.keep_ids)
    use_for_logs(hasher)  # log lines name files as the outputs do
    demo = Demographics.read(req.demographics, req.attributes, req.id_column)
    predictor = None
    truth = None
    if req.model is not None:
        predictor = _load_model(req)
        truth = _Truth(req, demo.id_column)
        if predictor.task == "classification" and req.labels is None:
            raise InputError(
                f"the model '{predictor.name}' is a classifier: pass {arg('labels')} (0/1 per image).",
                argument="labels",
            )
        if predictor.task == "segmentation" and req.masks is None:
            raise InputError(
                f"the model '{predictor.name}' segments: pass {arg('masks')} (one <id>.png per image).",
                argument="masks",
            )

    manifest: list[dict[str, Any]] = []
    cases: list[_Case] = []
    examples: list[dict[str, Any]] = []
    example_groups: set[str] = set()
    first_attr = demo.attributes[0]
    out = outs.staging  # moved into --out with the reports (fairaudit._util.atomic.output_set)
    from fairaudit.report.svg import png_data_uri

    tmp_records = out / f".augment_records.{os.getpid()}.tmp"
    records = open(tmp_records, "w", encoding="utf-8")  # noqa: SIM115 - closed below, streamed to keep memory flat
    try:
        for o in iter_outcomes(
            Path(req.dicom_dir),
            header_only=False,
            workers=req.workers,
            progress=req.progress,
            options=req.decode_options(),
        ):
            row = file_row(o, status="excluded", hasher=hasher)
            manifest.append(row)
            if o.status != "ok" or o.image is None:
                continue
            if req.max_images is not None and len(cases) >= req.max_images:
                row["reason"] = "beyond --max-images"
                continue
            key = outcome_id(o, demo.id_column)
            row["id"] = hasher(key) if key else ""
            k, why = demo.lookup(key)
            if k is None:
                row["reason"] = why
                continue
            image = np.asarray(o.image, dtype=np.float32)
            if predictor is not None and image.ndim != 2:
                row["reason"] = (
                    f"the model takes 2-D images; this file holds a {image.ndim}-D array {image.shape}"
                )
                continue
            label, mask = None, None
            if truth is not None:
                if predictor.task == "classification":
                    label = truth.label(key)
                    if label is None:
                        row["reason"] = (
                            f"no label in {req.labels.name if req.labels else 'labels'} for this id"
                        )
                        continue
                else:
                    mask, why = truth.mask(key, image.shape)
                    if mask is None:
                        row["reason"] = why
                        continue
            # PixelPaddingValue pixels never count; geometric draws move the padding with the image
            keep = None if o.padding_mask is None else ~o.padding_mask
            if keep is not None and not keep.any():
                row["reason"] = "every pixel is padding (PixelPaddingValue)"
                continue
            lo, hi = np.percentile(image if keep is None else image[keep], [1.0, 99.0])
            window = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
            clean = image_statistics(_unit(image, window), keep)
            case = _Case(k, clean, label=label)
            want_example = (
                len(examples) < MAX_EXAMPLES and (demo.value(k, first_attr) or "") not in example_groups
            )
            example = (
                {"group": demo.value(k, first_attr) or "", "clean": "", "augmented": []}
                if want_example
                else None
            )
            inputs_clean = predictor.prepare(image, o.spacing)[None] if predictor is not None else None
            batch: list[np.ndarray] = []
            aug_masks: list[np.ndarray | None] = []
            path_key = zlib.crc32(o.path.encode("utf-8"))
            for f_i, (family, t) in enumerate(ts.items()):
                sums = dict.fromkeys(STATISTICS, 0.0)
                for d in range(req.n_augment):
                    rng = generator(req.seed, (path_key, f_i, d))
                    res = t(image, rng, mask)
                    keep_aug = keep
                    if keep is not None and not t.intensity:
                        keep_aug = t.apply(image, res.records[0].params, keep.astype(np.uint8))[1].astype(
                            bool
                        )
                    st = image_statistics(
                        _unit(res.image, window), keep_aug if keep_aug is None or keep_aug.any() else None
                    )
                    for s in STATISTICS:
                        sums[s] += st[s]
                    rec = res.records[0].to_dict()
                    records.write(
                        json.dumps(to_jsonable({"image": row["id"], "family": family, "draw": d, **rec}))
                        + "\n"
                    )
                    if predictor is not None:
                        batch.append(predictor.prepare(res.image, o.spacing))
                        aug_masks.append(res.mask)
                    if example is not None and d == 0:
                        example["augmented"].append(
                            {
                                "family": family,
                                "uri": png_data_uri(res.image, *_display_window(image)),
                                "params": describe_params(rec["params"]),
                            }
                        )
                case.shift[family] = {s: sums[s] / req.n_augment - clean[s] for s in STATISTICS}
            if predictor is not None:
                _predict_case(case, predictor, inputs_clean, batch, aug_masks, mask, list(ts), req)
            if example is not None:
                example["clean"] = png_data_uri(image, *_display_window(image))
                examples.append(example)
                example_groups.add(example["group"])
            cases.append(case)
            row["status"], row["reason"] = "checked", ""
    except BaseException:
        records.close()
        tmp_records.unlink(missing_ok=True)
        raise
    records.close()
    from fairaudit.report.image_reports import image_reports
    from fairaudit.report.writers import write_reports

    if not cases:
        tmp_records.unlink(missing_ok=True)
        no_usable_image(outs, manifest + demo.manifest_rows(hasher), len(manifest), req.dicom_dir)
    results = _results(req, ts, demo, cases, manifest, predictor)

    reports = image_reports("augment_check.json", "augment_check", _plots(results, examples))
    files = write_reports(results, out, req.formats, reports)
    files["manifest"] = write_manifest(out, manifest + demo.manifest_rows(hasher))
    os.replace(tmp_records, out / "augment_records.jsonl")
    files["records"] = out / "augment_records.jsonl"
    return AugmentCheckOutcome(results, {k: outs.final(p) for k, p in files.items()})


def _display_window(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image, [1.0, 99.0])
    return float(lo), float(hi)


def _load_model(req: AugmentCheckRequest) -> Any:
    try:
        from fairaudit.models.loading import load_predictor
    except ImportError as exc:  # torch missing, or the models package not installed
        raise InputError(
            f"{arg('model')} needs the models extra (torch): {exc}. Install it with pip install 'fairaudit-imaging[models]'.",
            argument="model",
        ) from None
    predictor = load_predictor(req.model, req.device, trust_model=req.trust_model)
    if predictor.task == "classification" and predictor.outputs:
        from fairaudit.models.outputs import output_for

        output_for(predictor.outputs, req.label_column)  # a label column the model has no output for: exit 2
    return predictor


def _predict_case(
    case: _Case,
    predictor: Any,
    clean_input: np.ndarray,
    batch: list[np.ndarray],
    aug_masks: list[np.ndarray | None],
    mask: np.ndarray | None,
    families: list[str],
    req: AugmentCheckRequest,
) -> None:
    all_inputs = np.concatenate([clean_input, np.stack(batch)]) if batch else clean_input
    preds = []
    step = max(1, req.batch_size)
    for i in range(0, len(all_inputs), step):
        preds.append(predictor.predict(all_inputs[i : i + step]))
    pred = np.concatenate(preds)
    n = req.n_augment
    if predictor.task == "classification" and predictor.outputs:  # the label column's output
        from fairaudit.models.outputs import single_score

        pred = single_score(
            dict(zip(predictor.outputs, pred.T, strict=True)), predictor.outputs, req.label_column
        )[0]
    if predictor.task == "classification":
        case.score_clean = float(pred[0])
        for f_i, family in enumerate(families):
            case.scores[family] = [float(v) for v in pred[1 + f_i * n : 1 + (f_i + 1) * n]]
    else:
        shape = mask.shape
        case.dice_clean = dice(mask, predictor.restore(pred[0], shape) != 0)
        for f_i, family in enumerate(families):
            vals = []
            for d in range(n):
                j = f_i * n + d
                truth_aug = aug_masks[j] if aug_masks[j] is not None else mask
                vals.append(dice(truth_aug, predictor.restore(pred[1 + j], shape) != 0))
            case.dice[family] = vals


def _shift_tables(
    cases: list[_Case],
    members: list[int],
    groups: Groups,
    idx_draws: list[np.ndarray],
    families: list[str],
    level: float,
) -> list[dict[str, Any]]:
    out = []
    for family in families:
        for s in STATISTICS:
            v = np.array([cases[i].shift[family][s] for i in members], dtype=float)
            d = describe(v, groups, idx_draws, level)
            out.append({"family": family, "statistic": s, **d.to_dict()})
    return out


def _performance(
    cases: list[_Case],
    members: list[int],
    groups: Groups,
    idx_draws: list[np.ndarray],
    families: list[str],
    level: float,
    task: str,
    reference: str,
) -> dict[str, Any]:
    cs = [cases[i] for i in members]
    if task == "classification":
        y = np.array([c.label for c in cs], dtype=float)
        clean = np.array([c.score_clean for c in cs], dtype=float)
        aug = {f: np.array([c.scores[f] for c in cs], dtype=float) for f in families}
        metrics = {
            "auroc": (lambda s: lambda idx: _finite_mean(auroc(y[idx], s[idx]))),
            "accuracy": (
                lambda s: (
                    lambda idx: float(
                        np.mean((s[idx] >= THRESHOLD) == (y[idx][:, None] if s.ndim == 2 else y[idx]))
                    )
                )
            ),
        }
        per_case_clean = (clean - y) ** 2
        per_case_deg = {f: ((aug[f] - y[:, None]) ** 2).mean(axis=1) - per_case_clean for f in families}
        per_case_name = "brier_increase"
        main = "auroc"
    else:
        clean = np.array([c.dice_clean for c in cs], dtype=float)
        aug = {f: np.array([c.dice[f] for c in cs], dtype=float) for f in families}
        metrics = {
            "dice": (
                lambda s: (
                    lambda idx: float(np.mean(s[idx])) if s.ndim == 1 else float(np.mean(s[idx].mean(axis=1)))
                )
            )
        }
        per_case_deg = {f: clean - aug[f].mean(axis=1) for f in families}
        per_case_name = "dice_decrease"
        main = "dice"
    out: dict[str, Any] = {
        "task": task,
        "metrics": list(metrics),
        "main_metric": main,
        "per_case": per_case_name,
        "reference": reference,
        "metric_results": [],
    }
    tests: dict[str, dict[str, Any]] = {}
    for f in families:
        v = per_case_deg[f]
        kw = kruskal_omnibus([v[i][np.isfinite(v[i])] for i in groups.index])
        tests[f] = {
            "test": kw.test,
            "per_case": per_case_name,
            "p_value": kw.p_value,
            "statistic": kw.statistic,
            "df": kw.df,
        }
        if kw.p_value is None:
            tests[f]["reason"] = kw.reason
    for m, make in metrics.items():
        reason = "undefined (a group without both classes)" if m == "auroc" else "undefined"
        clean_est, clean_boot = bootstrap_group_metric(make(clean), groups, idx_draws, level, reason)
        fam_rows = []
        for f in families:
            aug_est, aug_boot = bootstrap_group_metric(make(aug[f]), groups, idx_draws, level, reason)
            deg_boot = clean_boot - aug_boot
            ref_k = groups.names.index(reference)
            values = {}
            for g in groups.names:
                cv, av = clean_est[g].value, aug_est[g].value
                values[g] = (cv - av) if cv is not None and av is not None else float("nan")
            deg = {
                g: estimate_dict(values[g], deg_boot[:, k], level, reason) for k, g in enumerate(groups.names)
            }
            vs_ref = {
                g: estimate_dict(
                    values[g] - values[reference], deg_boot[:, k] - deg_boot[:, ref_k], level, reason
                )
                for k, g in enumerate(groups.names)
                if g != reference
            }
            test = tests[f]  # one test per family, shared by the metrics (it is on per-image values)
            fam_rows.append(
                {
                    "family": f,
                    "augmented": {g: e.to_dict() for g, e in aug_est.items()},
                    "degradation": deg,
                    "degradation_vs_reference": vs_ref,
                    "test": test,
                }
            )
        out["metric_results"].append(
            {"metric": m, "clean": {g: e.to_dict() for g, e in clean_est.items()}, "families": fam_rows}
        )
    return out


def _results(
    req: AugmentCheckRequest,
    ts: dict[str, Transform],
    demo: Demographics,
    cases: list[_Case],
    manifest: list[dict[str, Any]],
    predictor: Any,
) -> dict[str, Any]:
    level = req.ci_level
    families = list(ts)
    attrs_out = []
    family_tests: list[dict[str, Any]] = []
    for a_i, (requested, col) in enumerate(zip(req.attributes, demo.attributes, strict=True)):
        labels = [demo.value(c.demo_row, col) for c in cases]
        members = [i for i, g in enumerate(labels) if g is not None]
        missing = len(cases) - len(members)
        if not members:
            attrs_out.append(
                {
                    "name": requested,
                    "groups": [],
                    "missing": missing,
                    "image_statistics": [],
                    "performance": None,
                    "summary": f"No image has a value of {requested}.",
                }
            )
            continue
        groups = Groups.of([labels[i] for i in members])
        idx_draws = draws(groups, req.bootstrap, req.seed, (a_i,))
        shifts = _shift_tables(cases, members, groups, idx_draws, families, level)
        family_tests += [s["test"] for s in shifts]
        perf = None
        reference = groups.names[int(np.argmax(groups.sizes))]
        if predictor is not None:
            perf = _performance(cases, members, groups, idx_draws, families, level, predictor.task, reference)
            for mr in perf["metric_results"]:
                if mr["metric"] == perf["main_metric"]:
                    family_tests += [f["test"] for f in mr["families"]]
        attrs_out.append(
            {
                "name": requested,
                "reference": reference,
                "groups": groups.rows(req.min_group_size),
                "missing": missing,
                "image_statistics": shifts,
                "performance": perf,
            }
        )
    adjust_family(family_tests, req.correction, 1 - level)
    for a in attrs_out:
        if a.get("groups"):
            a["summary"] = _summary(a, level)
    from fairaudit.report.image_reports import results_header

    results = {
        **results_header("augment_check", req.command),
        "config": {
            "modality": req.modality.lower(),
            "strength": req.strength,
            "geometric": req.geometric,
            "flip": req.flip,
            "n_augment": req.n_augment,
            "families": families,
            "seed": req.seed,
            "bootstrap": req.bootstrap,
            "ci_level": level,
            "ci_method": "percentile",
            "correction": req.correction,
            "min_group_size": req.min_group_size,
            "threshold": THRESHOLD if predictor is not None and predictor.task == "classification" else None,
        },
        "transforms": {
            f: {"class": type(t).__name__, "strength": t.strength, "ranges": t.ranges} for f, t in ts.items()
        },
        "inputs": {
            "n_files": len(manifest),
            "n_checked": len(cases),
            "excluded": excluded_counts(manifest),
        },
        "model": _model_view(predictor),
        "statistics": list(STATISTICS),
        "attributes": attrs_out,
        "outputs": {"records": "augment_records.jsonl"},
    }
    return to_jsonable(results)


def _model_view(predictor: Any) -> dict[str, Any] | None:
    if predictor is None:
        return None
    return {
        "name": predictor.name,
        "sha256": predictor.sha256,
        "task": predictor.task,
        "classes": list(predictor.classes),
    }


def _summary(a: dict[str, Any], level: float) -> str:
    perf = a.get("performance")
    parts = []
    if perf:
        metric = perf["main_metric"]
        main = next(m for m in perf["metric_results"] if m["metric"] == metric)
        per_case = perf["per_case"].replace("_", " ")
        sentences = []
        for f in main["families"]:
            deg = {g: e for g, e in f["degradation"].items() if e["value"] is not None}
            if not deg:
                sentences.append(f"{f['family']}: {metric} undefined")
                continue
            g = max(deg, key=lambda k: deg[k]["value"])
            e = deg[g]
            ci = f" {fmt_ci(e['ci'], 3, fmt_sig)}" if e.get("ci") else ""  # round-off reads 0
            if e["value"] <= 0:
                text = f"{f['family']}: {metric} does not drop for any {a['name']} group"
            elif not e.get("ci") or e["ci"][0] <= 0:
                text = f"{f['family']}: no clear drop in {metric} (largest for {a['name']} = {g}: {fmt_sig(e['value'], 3)}{ci})"
            else:
                text = f"{f['family']}: {metric} drops most for {a['name']} = {g} (by {fmt_sig(e['value'], 3)}{ci})"
            p_adj = f["test"].get("p_adjusted")
            if f["test"].get("significant"):
                text += f", and the per-image {per_case} differs between groups (adjusted p = {fmt_sig(p_adj, 3)})"
            elif p_adj is not None:
                text += f"; the per-image {per_case} does not differ significantly between groups"
            sentences.append(text)
        parts.append("; ".join(sentences) + ".")
    sig_shifts = sorted({s["family"] for s in a["image_statistics"] if s["test"].get("significant")})
    if sig_shifts:
        parts.append(
            f"Image statistics shift differently between {a['name']} groups under {', '.join(sig_shifts)} "
            "(Kruskal-Wallis, corrected)."
        )
    else:
        parts.append(
            f"No family shifts image statistics significantly differently between {a['name']} groups."
        )
    return " ".join(parts)


def _plots(results: dict[str, Any], examples: list[dict[str, Any]]) -> dict[str, Any]:
    from fairaudit.report.svg import interval_svg

    charts = {}
    for a in results["attributes"]:
        perf = a.get("performance")
        if not perf:
            continue
        charts[a["name"]] = []
        for mr in perf["metric_results"]:
            rows = []
            for f in mr["families"]:
                for g, e in f["degradation"].items():
                    rows.append((f"{f['family']} · {g}", e["value"], e["ci"]))
            charts[a["name"]].append(
                interval_svg(
                    rows,
                    f"Degradation of {mr['metric']} by {a['name']} (clean − augmented)",
                    f"{mr['metric']} lost",
                )
            )
    return {"examples": examples, "charts": charts}
