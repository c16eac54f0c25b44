"""The Python API: an audit from a notebook, with DataFrames or paths, no file written.

    import fairaudit
    report = fairaudit.audit(predictions_df, demographics=demo_df, attributes=["sex", "race"],
                             intersect=[("sex", "race")], bootstrap=2000, seed=0)
    report.by_group("race"); report.comparisons(); report.gate("policy.toml")
    report.save("audit_out")     # the files `fairaudit audit` writes

Each function takes the `audit` command's options as keyword arguments (the flag's name
with underscores: `--label-column` is `label_column`), checks them by the same rules and
runs the same workflow (fairaudit.workflows), so `report.to_dict()` is the results.json
the CLI writes for the same inputs and seed, apart from `created` and `command`
(docs/python-api.md).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fairaudit.results import AuditReport

#: Inputs may be a DataFrame or the path of a CSV.
TableLike = Any
Intersections = Sequence[Sequence[str] | str]


def _command(name: str) -> str:
    """results.json's `command` for a Python call (the CLI records the command line)."""
    return f"fairaudit.{name}() (Python API)"


def _table(value: TableLike | None, role: str) -> Any:
    """A DataFrame as a Table (fairaudit.io.tables.table_from_frame), a path as a Path."""
    import pandas as pd

    from fairaudit.io.tables import table_from_frame

    if value is None:
        return None
    if isinstance(value, pd.DataFrame):
        return table_from_frame(value, f"{role} (DataFrame)")
    return Path(value)


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _intersections(values: Intersections) -> list[list[str]]:
    """[("sex", "race")] or ["sex,race"] into lists of attribute names."""
    from fairaudit.workflows.predictions import parse_intersections

    return parse_intersections([v if isinstance(v, str) else ",".join(v) for v in values])


_PATHS = ("calibration_set", "gate", "baseline_predictions", "dicom_dir")
_LOWER = ("ci_method", "correction", "unit", "discover_metric", "score_scale", "uncertain")


def _bins(bins: Mapping[str, Any]) -> dict[str, Any]:
    """bins={"age": [40, 65]} or {"age": "quantiles:4"}, as `--bins` takes them."""
    from fairaudit.io.dicom_attributes import parse_bins

    out: dict[str, Any] = {}
    for k, v in bins.items():
        out.update(parse_bins([f"{k}={v}"]) if isinstance(v, str) else {k: [float(x) for x in v]})
    return out


def _request(predictions: Any, command: str, arguments: dict[str, Any]) -> Any:
    """An AuditRequest from an API function's arguments (the request the CLI builds from
    the same flags): DataFrames as Tables, paths as Paths, names lower-cased as the CLI does."""
    from fairaudit.workflows.predictions import AuditRequest

    fields = {f.name for f in dataclasses.fields(AuditRequest)} - {"predictions", "out", "formats", "command"}
    fields |= {"intersect", "score_column"}
    kw = {k: v for k, v in arguments.items() if k in fields}
    attributes = kw.pop("attributes")
    kw["attributes"] = [attributes] if isinstance(attributes, str) else list(attributes)
    kw["demographics"] = _table(kw.get("demographics"), "demographics")
    kw["labels"] = _table(kw.get("labels"), "labels")
    kw["intersections"] = _intersections(kw.pop("intersect", ()))
    kw["references"] = dict(kw.get("references") or {})
    within = kw.get("within") or ()
    kw["within"] = [within] if isinstance(within, str) else list(within)
    kw["bins"] = _bins(kw.get("bins") or {})
    score_column = kw.pop("score_column", None)
    kw["score_column"], kw["score_column_given"] = score_column or "score", score_column is not None
    findings = arguments.get("findings")
    if findings is not None:  # a multi-label audit: "all", "A,B" or a list of finding columns
        from fairaudit.cohort.findings import parse_findings

        kw["findings"] = parse_findings(findings if isinstance(findings, str) else ",".join(findings))
        kw["score_columns"] = [f"{k}={v}" for k, v in (arguments.get("score_columns") or {}).items()]
        kw["score_column"], kw["score_column_given"] = "score", False
    elif arguments.get("task") == "multiclass":  # {class: probability column} (docs/multiclass.md)
        kw["score_columns"] = [f"{k}={v}" for k, v in (arguments.get("score_columns") or {}).items()]
    if kw.get("primary_metrics") is not None:
        kw["primary_metrics"] = tuple(m.lower() for m in kw["primary_metrics"])
    for name in _PATHS:
        kw[name] = _path(kw.get(name))
    for name in _LOWER:
        if kw.get(name):
            kw[name] = kw[name].lower()
    return AuditRequest(predictions=predictions, out=None, formats=("json",), command=command, **kw)


def audit(
    predictions: TableLike,
    *,
    attributes: Sequence[str] | str,
    demographics: TableLike | None = None,
    labels: TableLike | None = None,
    intersect: Intersections = (),
    references: Mapping[str, str] | None = None,
    id_column: str | None = None,
    cluster_column: str | None = None,
    label_column: str = "label",
    score_column: str | None = None,
    prediction_column: str = "prediction",
    missing_as_group: bool = False,
    threshold: float = 0.5,
    threshold_policy: str | None = None,
    calibration_set: str | Path | None = None,
    bootstrap: int = 2000,
    permutations: int | None = None,
    ci_level: float = 0.95,
    ci_method: str = "score",
    correction: str = "holm",
    primary_metrics: Sequence[str] | None = None,
    min_group_size: int = 30,
    seed: int = 0,
    workers: int | None = None,
    gate: str | Path | None = None,
    baseline_predictions: str | Path | None = None,
    dicom_dir: str | Path | None = None,
    unit: str = "image",
    bins: Mapping[str, Sequence[float]] | None = None,
    discover: bool = False,
    discover_metric: str | None = None,
    discover_top: int = 10,
    salt: str | None = None,
    keep_ids: bool = False,
    max_groups: int = 20,
    merge_small_groups: bool = False,
    positive_label: str | None = None,
    score_scale: str = "probability",
    max_pixels: int | None = None,
    max_file_size: int | None = None,
    findings: str | Sequence[str] | None = None,
    score_columns: Mapping[str, str] | None = None,
    uncertain: str = "exclude",
    no_finding_column: str | None = None,
    within: Sequence[str] | str = (),
    progress: bool = False,
    task: str = "classification",
) -> AuditReport:
    """Audit a model's predictions per group: a DataFrame (or CSV) with an id column, a 0/1
    label (or `labels`) and a score in [0, 1] (or a 0/1 `prediction`), joined with
    `demographics` on the shared id column. The options are the `audit` command's
    (docs/statistics.md); `gate` judges a policy file into the report's `gate_outcome`.
    `findings` ("all" or the finding columns) makes it a multi-label audit, with
    `score_columns` {finding: column} where a score is not named FINDING or score_FINDING
    and `uncertain` for labels of -1 (docs/multilabel.md). `within` (a column, or several)
    also compares each group with the reference within the column's strata, pooled
    (docs/statistics.md, "Confounders (`--within`)"). `task="multiclass"`: class names or
    integers in the label column and a probability column per class, `score_columns`
    {class: column} where one is not named score_CLASS (docs/multiclass.md).
    Nothing is written: call `.save(out)` on the report for the CLI's files."""
    arguments = dict(locals())
    from fairaudit.cohort.manifest import ManifestSpool
    from fairaudit.workflows.audit import check_audit
    from fairaudit.workflows.predictions import build_report

    req = _request(_table(predictions, "predictions"), _command("audit"), arguments)
    check_audit(req, task=task)
    spool = ManifestSpool()  # kept by the report (its manifest.csv), closed when it goes
    try:
        report = build_report(req, spool)
    except BaseException:
        spool.close()
        raise
    return report


def audit_segmentation(
    masks: str | Path,
    pred_masks: str | Path | Mapping[str, Any],
    *,
    demographics: TableLike,
    attributes: Sequence[str] | str,
    intersect: Intersections = (),
    references: Mapping[str, str] | None = None,
    dicom_dir: str | Path | None = None,
    id_column: str | None = None,
    cluster_column: str | None = None,
    mask_labels: Sequence[int] | str | None = None,
    pred_mask_labels: Sequence[int] | str | None = None,
    spacing: Sequence[float] | str | None = None,
    nsd_tolerance_mm: float = 1.0,
    structures: Mapping[int, str] | str | None = None,
    missing_as_group: bool = False,
    bootstrap: int = 2000,
    ci_level: float = 0.95,
    ci_method: str = "score",
    correction: str = "holm",
    primary_metrics: Sequence[str] | None = None,
    min_group_size: int = 30,
    seed: int = 0,
    workers: int | None = None,
    gate: str | Path | None = None,
    discover: bool = False,
    discover_metric: str | None = None,
    discover_top: int = 10,
    salt: str | None = None,
    keep_ids: bool = False,
    max_groups: int = 20,
    progress: bool = False,
) -> AuditReport:
    """Audit predicted masks against the ground truth per group: `masks` and `pred_masks`
    are folders of <id>.png / <id>.npy label images (`pred_masks` may also be a dict id ->
    numpy array), `demographics` names each case's groups. dice, iou, hd95, assd (mm from
    the DICOM files of `dicom_dir` or `spacing`), volume error and the normalized surface
    Dice at `nsd_tolerance_mm` with the same intervals,
    tests and gate as classification (docs/segmentation.md). NIfTI masks and images are
    read too (docs/nifti.md); `structures` ({1: "liver", 2: "tumour"} or "1=liver,2=tumour")
    audits each label on its own. Nothing is written."""
    arguments = dict(locals())
    from fairaudit.workflows.structures import check_structures, parse_structures

    if structures is not None and not isinstance(structures, str):
        structures = ",".join(f"{int(k)}={v}" for k, v in structures.items())
    arguments["structures"] = parse_structures(structures)
    check_structures(arguments["structures"], mask_labels, pred_mask_labels)
    from fairaudit.workflows.audit import check_audit
    from fairaudit.workflows.segmentation import build_segmentation_report, request_from_audit

    req = _request(None, _command("audit_segmentation"), arguments)
    preds = pred_masks if isinstance(pred_masks, Mapping) else Path(pred_masks)
    check_audit(req, task="segmentation", masks=Path(masks), pred_masks=preds)
    seg = request_from_audit(
        req,
        masks=Path(masks),
        pred_masks=preds,
        mask_labels=_labels(mask_labels),
        pred_mask_labels=_labels(pred_mask_labels),
        spacing=_spacing(spacing),
    )
    return build_segmentation_report(seg)


def _spacing(values: Sequence[float] | str | None) -> tuple[float, ...] | str | None:
    """Spacing as the workflows take it: "0.5x0.5" as given, a sequence as floats."""
    return values if values is None or isinstance(values, str) else tuple(float(v) for v in values)


def _labels(values: Sequence[int] | str | None) -> tuple[int, ...] | str | None:
    return values if values is None or isinstance(values, str) else tuple(int(v) for v in values)


def audit_model(
    dicom_dir: str | Path,
    *,
    model: str | Path,
    demographics: TableLike,
    attributes: Sequence[str] | str,
    labels: TableLike | None = None,
    label_column: str = "label",
    task: str = "classification",
    masks: str | Path | None = None,
    mask_labels: Sequence[int] | str | None = None,
    pred_mask_labels: Sequence[int] | str | None = None,
    spacing: Sequence[float] | str | None = None,
    nsd_tolerance_mm: float = 1.0,
    device: str = "auto",
    batch_size: int | None = None,
    trust_model: bool = False,
    intersect: Intersections = (),
    references: Mapping[str, str] | None = None,
    id_column: str | None = None,
    cluster_column: str | None = None,
    missing_as_group: bool = False,
    threshold: float = 0.5,
    threshold_policy: str | None = None,
    bootstrap: int = 2000,
    permutations: int | None = None,
    ci_level: float = 0.95,
    ci_method: str = "score",
    correction: str = "holm",
    primary_metrics: Sequence[str] | None = None,
    min_group_size: int = 30,
    seed: int = 0,
    workers: int | None = None,
    gate: str | Path | None = None,
    bins: Mapping[str, Sequence[float]] | None = None,
    discover: bool = False,
    discover_metric: str | None = None,
    discover_top: int = 10,
    salt: str | None = None,
    keep_ids: bool = False,
    max_groups: int = 20,
    merge_small_groups: bool = False,
    positive_label: str | None = None,
    max_pixels: int | None = None,
    max_file_size: int | None = None,
    within: Sequence[str] | str = (),
    progress: bool = False,
) -> AuditReport:
    """Run `model` (bundled:NAME, a bundle folder, an ONNX file, or with `trust_model` a
    TorchScript file) on every DICOM file of `dicom_dir` and audit its predictions
    (classification) or masks (`task="segmentation"` with `masks`). The predictions and
    predicted masks are made in a private temporary folder; `save` copies them with the
    reports (predictions.csv, pred_masks/). Needs `pip install 'fairaudit-imaging[models]'`."""
    arguments = dict(locals())
    from fairaudit.workflows.audit import run_audit

    tmp = tempfile.TemporaryDirectory(prefix="fairaudit-api-")
    try:
        req = _request(None, _command("audit_model"), arguments)
        out = Path(tmp.name) / "run"
        req.out = out
        outcome = run_audit(
            req, task=task, model=str(model), device=device, batch_size=batch_size,
            masks=_path(masks), mask_labels=_labels(mask_labels), pred_mask_labels=_labels(pred_mask_labels),
            spacing=_spacing(spacing),
        )  # fmt: skip
        report = outcome.report
        assert report is not None
        report.manifest = (out / "manifest.csv").read_text(encoding="utf-8")
        from fairaudit.workflows.model_run import PRED_MASKS_DIR, PREDICTIONS_FILE

        for name in (PREDICTIONS_FILE, PRED_MASKS_DIR):
            if (out / name).exists():
                report.companions[name] = out / name
        report._keep.append(tmp)  # the companions live there until the report goes
        return report
    except BaseException:
        tmp.cleanup()
        raise


def load(path: str | Path) -> AuditReport:
    """An AuditReport read back from a saved results.json (views and to_dict; see
    AuditReport.load)."""
    from fairaudit.results import AuditReport

    return AuditReport.load(path)


__all__ = ["audit", "audit_model", "audit_segmentation", "load"]
