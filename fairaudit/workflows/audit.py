"""An audit from its arguments: check them, then run the workflow that fits.

`check_audit` holds every rule about which arguments go together (and the values that are
wrong whatever the data), so that bad usage is an InputError naming the argument (exit 2
in the CLI) before any file is read, model loaded or cluster joined. The workflows call it
too, so a Python caller of `audit_predictions`, `audit_with_model` or `request_from_audit`
meets the same rules. `run_audit` is the `audit` command without its flags: the CLI maps
the flags to its arguments and renders the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairaudit.errors import InputError, arg, cli_example

if TYPE_CHECKING:
    from fairaudit.workflows.core import AuditOutcome

TASKS = ("classification", "segmentation", "multiclass")


def check_audit(
    req: Any,
    *,
    task: str = "classification",
    model: str | None = None,
    masks: Any = None,
    pred_masks: Any = None,
    resume: bool = False,
    cache_dir: Path | None = None,
) -> None:
    """Refuse arguments that do not go together, first broken rule first (InputError with
    `argument` set). `req` is an AuditRequest; the rest are the model and mask arguments."""
    if task not in TASKS:
        raise InputError(
            f"{arg('task')} must be classification, segmentation or multiclass, not '{task}'.",
            argument="task",
        )
    if task == "multiclass" or getattr(req, "multiclass", False):  # docs/multiclass.md
        from fairaudit.workflows.multiclass import check_multiclass

        if task == "multiclass" and hasattr(req, "multiclass"):
            req.multiclass = True
        check_multiclass(req, model)
    mask_given = masks is not None or pred_masks is not None
    segmentation = task == "segmentation" or mask_given
    if getattr(req, "predictions", None) is None and model is None and not segmentation:
        raise InputError(
            f"nothing to audit: pass {arg('predictions')} preds.csv, or {arg('dicom_dir')} with {arg('model')} "
            "(bundled:NAME, a bundle folder, a TorchScript or ONNX file).",
            argument="predictions",
        )
    if model is not None and pred_masks is not None:
        raise InputError(
            f"{arg('model')} and {arg('pred_masks')} exclude each other: the model makes the masks.",
            argument="pred_masks",
        )
    scale = getattr(req, "score_scale", "probability")
    if scale not in ("probability", "percent"):
        raise InputError(
            f"{arg('score_scale')} must be probability or percent, not '{scale}'.", argument="score_scale"
        )
    if model is not None and scale != "probability":
        raise InputError(
            f"{arg('score_scale')} percent applies to a predictions file: a model's scores are probabilities.",
            argument="score_scale",
        )
    if not segmentation and getattr(req, "nsd_tolerance_mm", 1.0) != 1.0:
        raise InputError(
            f"{arg('nsd_tolerance_mm')} is the tolerance of a segmentation metric: add {arg('task')} segmentation.",
            argument="nsd_tolerance_mm",
        )
    if segmentation and (getattr(req, "positive_label", None) is not None or scale != "probability"):
        raise InputError(
            f"{arg('positive_label')} and {arg('score_scale')} apply to classification labels and scores.",
            argument="positive_label" if getattr(req, "positive_label", None) is not None else "score_scale",
        )
    _check_findings(req, segmentation, model)
    _check_id_columns(req, segmentation, model)
    _check_within(req, segmentation)
    if model is None and (resume or cache_dir is not None):
        raise InputError(
            f"{arg('resume')} and {arg('cache_dir')} apply to a model run: add {arg('model')}.",
            argument="resume" if resume else "cache_dir",
        )
    if mask_given and task != "segmentation":
        raise InputError(
            f"{arg('masks')} and {arg('pred_masks')} belong to a segmentation audit: add {arg('task')} segmentation.",
            argument="masks" if masks is not None else "pred_masks",
        )
    if segmentation:
        # dicom: attributes are read from DICOM_DIR's headers (workflows.segmentation); --bins
        # cuts those only: a demographics column is binned in the CSV.
        csv_bins = [t for t in getattr(req, "bins", None) or {} if not t.strip().startswith("dicom:")]
        if csv_bins:
            raise InputError(
                f"{arg('bins')} {csv_bins[0]}=...: a segmentation audit bins dicom: attributes only; "
                "put the binned column in the demographics CSV.",
                argument="bins",
            )
        if any(a.strip().startswith("dicom:") for a in _attribute_names(req)) or getattr(req, "bins", None):
            from fairaudit.io import dicom_attributes

            # Vetted (identifying keywords refused, DICOM_DIR needed) before a model runs.
            dicom_attributes.requested(
                _attribute_names(req), [], dict(getattr(req, "bins", None) or {}), req.dicom_dir is not None
            )
        if getattr(req, "merge_small_groups", False):
            raise InputError(
                f"{arg('merge_small_groups')} is available for classification audits only (yet).",
                argument="merge_small_groups",
            )
        if getattr(req, "baseline_predictions", None) is not None:
            raise InputError(
                f"{arg('baseline_predictions')} is available for classification audits only.",
                argument="baseline_predictions",
            )
    if model is not None:
        _check_model_run(req, segmentation, masks)
    elif segmentation and (masks is None or pred_masks is None):
        raise InputError(
            f"a segmentation audit needs {arg('masks')} (ground truth) and {arg('pred_masks')} "
            f"(predictions, or {arg('model')}).",
            hint="Both are folders of <id>.png or <id>.npy files.",
            argument="masks" if masks is None else "pred_masks",
        )
    if segmentation:
        _check_segmentation(req)
    elif getattr(req, "calibration_set", None) is not None and not getattr(req, "threshold_policy", None):
        raise InputError(
            f"{arg('calibration_set')} needs {arg('threshold_policy')} (youden, f1, sensitivity=X, ...).",
            argument="calibration_set",
        )
    _check_values(req)


def _check_id_columns(req: Any, segmentation: bool, model: str | None) -> None:
    """`--id-column ROLE=COLUMN,...` names the join key per input file of a predictions audit."""
    from fairaudit.cohort.join import parse_id_columns

    mapping = parse_id_columns(getattr(req, "id_column", None))
    if mapping is not None and (segmentation or model is not None):
        raise InputError(
            f"{arg('id_column')} ROLE=COLUMN pairs join the files of a predictions audit; a model run or a "
            "segmentation audit names its cases by the DICOM id or the mask file: give one column name.",
            argument="id_column",
        )


def _check_findings(req: Any, segmentation: bool, model: str | None) -> None:
    """--findings (a multi-label audit) and the flags that belong to one finding."""
    from fairaudit.cohort.findings import UNCERTAIN_POLICIES, parse_score_map

    findings = getattr(req, "findings", None)
    uncertain = getattr(req, "uncertain", "exclude")
    scores = list(getattr(req, "score_columns", None) or [])
    if uncertain not in UNCERTAIN_POLICIES:
        raise InputError(
            f"{arg('uncertain')} must be one of {', '.join(UNCERTAIN_POLICIES)}, not '{uncertain}'.",
            argument="uncertain",
        )
    if findings is None:
        if getattr(req, "no_finding_column", None) is not None:
            raise InputError(
                f"{arg('no_finding_column')} applies to a multi-label audit: add {arg('findings')} all or A,B.",
                argument="no_finding_column",
            )
        if uncertain != "exclude":
            raise InputError(
                f"{arg('uncertain')} applies to a multi-label audit: add {arg('findings')} all or A,B.",
                argument="uncertain",
            )
        if len(scores) > 1 and not getattr(req, "multiclass", False):
            raise InputError(
                f"{arg('score_column')} is given more than once: give it once (with {arg('findings')}, "
                "once per finding as FINDING=COLUMN).",
                argument="score_column",
            )
        return
    clash = [
        (segmentation, "task", "a segmentation audit has no findings"),
        (getattr(req, "label_column", "label") != "label", "label_column",
         "the finding columns are the labels"),
        (getattr(req, "positive_label", None) is not None, "positive_label",
         "finding columns are 0, 1 or -1 (uncertain)"),
        (getattr(req, "baseline_predictions", None) is not None, "baseline_predictions",
         f"the release comparison audits one finding (yet): run it with {arg('label_column')}"),
        (bool(getattr(req, "discover", False)), "discover",
         f"slice discovery ranks one finding's slices (yet): run it with {arg('label_column')}"),
    ]  # fmt: skip
    for bad, name, why in clash:
        if bad:
            raise InputError(f"{arg(name)} and {arg('findings')} do not go together: {why}.", argument=name)
    parse_score_map(scores)  # each FINDING=COLUMN


def _check_within(req: Any, segmentation: bool) -> None:
    """--within COLUMN: strata of a classification audit, none of them an audited attribute."""
    within = list(getattr(req, "within", None) or [])
    if not within:
        return
    if segmentation:
        raise InputError(
            f"{arg('within')} is available for classification audits only (yet).", argument="within"
        )
    audited = {a.strip().lower(): a for a in _attribute_names(req)}
    for column in within:
        if not str(column).strip():
            raise InputError(f"{arg('within')} needs a column name.", argument="within")
        if str(column).strip().lower() in audited:
            raise InputError(
                f"{arg('within')} {column}: {column} is also audited ({arg('attributes')} or "
                f"{arg('intersections')}): a group cannot be compared with its reference within "
                "strata of itself.",
                hint=f"Stratify by another column (the site, the scanner), or audit {column} in a run "
                f"without {arg('within')} {column}.",
                argument="within",
            )


def _attribute_names(req: Any) -> list[str]:
    """The attributes and the members of the intersections, as given (lists or parsed)."""
    names = list(getattr(req, "attributes", None) or [])
    for parts in getattr(req, "intersections", None) or []:
        names += [parts] if isinstance(parts, str) else list(parts)
    return names


def _check_model_run(req: Any, segmentation: bool, masks: Any) -> None:
    """A model runs on a DICOM folder, one image at a time, instead of a predictions CSV."""
    if getattr(req, "dicom_dir", None) is None:
        raise InputError(
            f"{arg('model')} runs on a DICOM folder: pass {arg('dicom_dir')}"
            + cli_example(f" (fairaudit audit {arg('dicom_dir')} {arg('model')} ...)")
            + ".",
            argument="dicom_dir",
        )
    if getattr(req, "predictions", None) is not None:
        raise InputError(
            f"{arg('model')} and {arg('predictions')} exclude each other: audit a model run or a predictions CSV.",
            argument="predictions",
        )
    if getattr(req, "unit", "image") != "image":
        raise InputError(
            f"{arg('unit')} series is not supported with {arg('model')} (the models take one image each).",
            argument="unit",
        )
    if segmentation and masks is None:
        raise InputError(
            f"a segmentation audit of a model needs the ground truth: pass {arg('masks')} MASK_DIR "
            "(<id>.png or <id>.npy label images).",
            argument="masks",
        )


def _check_segmentation(req: Any) -> None:
    """A segmentation audit reads masks: no predictions CSV, threshold or series records."""
    if getattr(req, "predictions", None) is not None:
        raise InputError(
            f"{arg('predictions')} is for classification; a segmentation audit reads {arg('pred_masks')}.",
            argument="predictions",
        )
    if getattr(req, "threshold_policy", None) or getattr(req, "calibration_set", None):
        raise InputError(
            f"{arg('threshold_policy')} and {arg('calibration_set')} apply to classification audits only.",
            argument="threshold_policy" if getattr(req, "threshold_policy", None) else "calibration_set",
        )
    if getattr(req, "unit", "image") != "image":
        raise InputError(
            f"{arg('unit')} series is not supported for segmentation audits (one mask per image).",
            argument="unit",
        )


def _check_values(req: Any) -> None:
    """Counts, FAIRAUDIT_WORKERS and metric names, checked before the work rather than when
    the statistics (or the worker pool) start after a model run (docs/ci.md, "Exit codes")."""
    from fairaudit._util.workers import env_workers
    from fairaudit.stats._audit import KNOWN_PRIMARY

    for name in ("bootstrap", "permutations"):
        value = getattr(req, name, None)
        if value is not None and value < 1:
            hint = (
                "The default is 2000."
                if name == "bootstrap"
                else f"Leave it out to use the {arg('bootstrap')} count."
            )
            raise InputError(f"{arg(name)} must be at least 1, got {value}.", hint=hint, argument=name)
    env_workers()
    unknown = [m for m in getattr(req, "primary_metrics", None) or () if m not in KNOWN_PRIMARY]
    if unknown:
        raise InputError(
            f"{arg('primary_metrics')}: unknown metric(s) {', '.join(unknown)}; known: {', '.join(KNOWN_PRIMARY)}.",
            argument="primary_metrics",
        )


def check_outputs(
    req: Any,
    *,
    model: str | None = None,
    masks: Any = None,
    pred_masks: Any = None,
    cache_dir: Path | None = None,
) -> None:
    """`out` and `cache_dir` outside every input folder, and overwriting no input file (exit 2,
    before any work; fairaudit._util.safe_paths)."""
    from fairaudit._util.safe_paths import check_output_location
    from fairaudit.models.pred_cache import CACHE_DIR
    from fairaudit.report.writers import REPORT_FILES
    from fairaudit.workflows.model_run import PRED_MASKS_DIR, PREDICTIONS_FILE
    from fairaudit.workflows.segmentation import CASES_FILE

    folders = {"dicom_dir": req.dicom_dir, "masks": masks, "pred_masks": _path(pred_masks)}
    if model is not None and not model.startswith("bundled:"):
        folders["model"] = Path(model)  # a bundle folder (a model file is no folder: skipped)
    written = {*REPORT_FILES.values(), "manifest.csv", CASES_FILE}
    if model is not None:  # a model run writes these too (predictions OUT/predictions.csv is fine without)
        written |= {PREDICTIONS_FILE, PRED_MASKS_DIR, CACHE_DIR}
    names = ("predictions", "demographics", "labels", "gate", "calibration_set", "baseline_predictions")
    files = {n: _path(getattr(req, n, None)) for n in names}
    files |= folders  # an input folder at OUT/pred_masks would be written into too
    check_output_location(
        {"out": req.out, "cache_dir": cache_dir}, folders=folders, files=files, written=written
    )


def _path(value: Any) -> Path | None:
    """A path argument as a Path; None for anything else (masks held in memory, a Table)."""
    return Path(value) if isinstance(value, (str, Path)) else None


def run_audit(
    req: Any,
    *,
    task: str = "classification",
    model: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    masks: Path | None = None,
    pred_masks: Path | Mapping[str, Any] | None = None,
    mask_labels: str | tuple[int, ...] | None = None,
    pred_mask_labels: str | tuple[int, ...] | None = None,
    spacing: str | tuple[float, ...] | None = None,
    resume: bool = False,
    cache_dir: Path | None = None,
    scheduler: str | None = None,
    follow_symlinks: bool = False,
) -> AuditOutcome:
    """The `audit` command: the arguments checked, then a model run, a segmentation audit of
    predicted masks, or an audit of a predictions CSV, the files written into `req.out`.

    `scheduler` runs the per-file work on a Dask cluster (fairaudit.cluster);
    `follow_symlinks` follows links out of the DICOM folder (fairaudit.io.dicom._scan).
    """
    from fairaudit import cluster
    from fairaudit.io.dicom._scan import following_symlinks

    check_audit(
        req, task=task, model=model, masks=masks, pred_masks=pred_masks, resume=resume, cache_dir=cache_dir
    )
    check_outputs(req, model=model, masks=masks, pred_masks=pred_masks, cache_dir=cache_dir)
    segmentation = task == "segmentation"
    with cluster.connect(scheduler), following_symlinks(follow_symlinks):
        if model is not None:
            from fairaudit.workflows.model_run import audit_with_model

            return audit_with_model(
                req, model, device=device, batch_size=batch_size, segmentation=segmentation,
                masks=masks, mask_labels=mask_labels, pred_mask_labels=pred_mask_labels,
                spacing=spacing, resume=resume, cache_dir=cache_dir,
            )  # fmt: skip
        if segmentation:
            from fairaudit.workflows.segmentation import audit_segmentation, request_from_audit

            return audit_segmentation(
                request_from_audit(
                    req, masks=masks, pred_masks=pred_masks, mask_labels=mask_labels,
                    pred_mask_labels=pred_mask_labels, spacing=spacing,
                )
            )  # fmt: skip
        from fairaudit.workflows.predictions import audit_predictions

        return audit_predictions(req)
