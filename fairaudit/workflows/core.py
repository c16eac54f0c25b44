"""The skeleton every audit follows: validate -> cohort -> stats -> attach -> write.

Classification (workflows.predictions), segmentation (workflows.segmentation), model runs
(workflows.model_run, which end in one of the two) and baseline comparisons share these
steps; each task supplies only its join and its statistics. The result is an AuditReport
(fairaudit.results); writing it is the last step, and only the CLI or `report.save` does it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairaudit.errors import InputError, arg

if TYPE_CHECKING:
    from fairaudit.gate import GatePolicy
    from fairaudit.results import AuditReport
    from fairaudit.stats import AuditConfig

log = logging.getLogger(__name__)

_TIMINGS = ("seconds", "model_seconds", "images_per_second")


@dataclass
class AuditOutcome:
    """What an audit run written to --out gives the CLI: the report, its files, the exit code."""

    results: dict[str, Any]
    files: dict[str, Path]
    exit_code: int
    report: AuditReport | None = field(default=None, repr=False)


def input_paths(req: Any) -> list[Any]:
    """The files and folders a run reads: never removed or replaced as a previous run's outputs."""
    names = ("predictions", "demographics", "labels", "calibration_set", "gate", "baseline_predictions")
    names += ("dicom_dir", "masks", "pred_masks")
    return [getattr(req, n, None) for n in names if isinstance(getattr(req, n, None), (str, Path))]


# ---------------------------------------------------------------------------- validate
def load_gate(path: Path | str | None, task: str) -> GatePolicy | None:
    """The gate policy, checked against the task before any work: a metric the task lacks is
    bad input (exit 2), not a gate that cannot decide."""
    if path is None:
        return None
    from fairaudit.gate import check_policy_task, load_policy

    policy = load_policy(path)
    check_policy_task(policy, task, path)
    return policy


def audit_config(req: Any, policy: GatePolicy | None, **task_options: Any) -> AuditConfig:
    """The statistics' settings from a request; a bad value is bad input (exit 2)."""
    from fairaudit.gate import primary_family
    from fairaudit.stats import AuditConfig

    try:
        return AuditConfig(
            bootstrap=req.bootstrap,
            ci_level=req.ci_level,
            ci_method=req.ci_method,
            seed=req.seed,
            min_group_size=req.min_group_size,
            correction=req.correction,
            primary_metrics=primary_family(req.primary_metrics, policy),
            workers=req.workers,
            **task_options,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None


def resolve_references(references: Mapping[str, str], known: Iterable[str]) -> dict[str, str]:
    """`references` (attribute or "a,b" intersection -> group) by the names the cohort uses:
    an intersection by its joined name, each group value capped as the cohort caps it."""
    from fairaudit._util.sanitize import cap
    from fairaudit.cohort.join import INTERSECTION_SEP, intersection_name

    known = list(known)
    out = {}
    for attr, group in references.items():
        name = attr if attr in known else intersection_name([p.strip() for p in attr.split(",")])
        if name not in known:
            raise InputError(
                f"{arg('references')} {attr}={group}: '{attr}' is not an audited attribute ({', '.join(known)}).",
                argument="references",
            )
        # Named as the cohort names it: a value over NAME_LIMIT characters is capped there.
        parts = group.split(INTERSECTION_SEP) if name != attr else [group]
        out[name] = INTERSECTION_SEP.join(cap(p) for p in parts)
    return out


# ---------------------------------------------------------------------------- stats
def run_stats(compute: Callable[[], Any]) -> Any:
    """Run the statistics; a ValueError they raise about the inputs is bad input (exit 2)."""
    try:
        return compute()
    except ValueError as exc:
        raise InputError(str(exc)) from None


# ---------------------------------------------------------------------------- attach
def without_timings(model: dict[str, Any] | None) -> dict[str, Any] | None:
    """The model block without wall-clock timings, which are logged instead: the same inputs and
    seed must give byte-identical results.json (apart from `created`)."""
    run = (model or {}).get("run")
    if not isinstance(run, dict) or not any(k in run for k in _TIMINGS):
        return model
    log.info("model run timings: %s", ", ".join(f"{k} {run[k]}" for k in _TIMINGS if k in run))
    return {**model, "run": {k: v for k, v in run.items() if k not in _TIMINGS}}


def base_config(body: Mapping[str, Any], *, id_column: str, cluster_column: str | None, cluster_missing: int,
                unit: str) -> dict[str, Any]:  # fmt: skip
    """results.json's `config`: the statistics' settings plus the join's id and cluster columns."""
    config = dict(body["config"])
    config["id_column"] = id_column
    config["cluster_column"] = cluster_column
    config["cluster_missing"] = cluster_missing
    if config.get("resampling_unit") == "case":
        config["resampling_unit"] = unit
    return config


# ---------------------------------------------------------------------------- write
def write_outcome(
    report: AuditReport, outs: Any, formats: Iterable[str], review: Mapping[str, Any] | None = None
) -> AuditOutcome:
    """Write `report` into the run's open output set (fairaudit._util.atomic.output_set,
    opened before the work so that a bad --out fails first) and give the CLI its outcome.

    `review` (--title, --context, --reference-population; fairaudit.report.review_view) is
    recorded in results.json first."""
    if review:
        from fairaudit.report.review_view import apply_review

        apply_review(report.data, review)
    files = report.write(outs, formats)
    return AuditOutcome(results=report.data, files=files, exit_code=report.exit_code, report=report)
