"""One audit's outcome as a Python object: `AuditReport`.

It holds exactly what results.json holds (`to_dict()`), the statistics behind it (the
`AuditResult` of fairaudit.stats, for views and the gate) and manifest.csv. Every audit
(classification, segmentation, a model run, a baseline comparison) ends in one, built by
`assemble`, the one place results.json's keys are laid out; the reports and the gate read
it, and `save` writes the same files the CLI writes (docs/python-api.md).
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairaudit.schema import header

if TYPE_CHECKING:
    import pandas as pd

    from fairaudit.cohort.manifest import ManifestSpool
    from fairaudit.gate import GatePolicy
    from fairaudit.stats.result import AuditResult

#: The formats `save` writes by default (the CLI's `--format` default).
DEFAULT_FORMATS = ("json", "md", "html")
#: The report formats there are (results.json is always written).
FORMATS = ("json", "md", "html", "junit")


def assemble(
    *,
    command: str,
    body: Mapping[str, Any],
    config: Mapping[str, Any],
    inputs: Mapping[str, Any],
    model: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """results.json's keys in their order (docs/reports.md), from the statistics' `body`
    (AuditResult.to_dict()) and what the workflow knows of inputs and model. The gate,
    baseline, discovered slices and provenance are attached by `AuditReport`. A multi-label
    audit's body (MultiLabelResult.to_dict()) gives `findings` and `findings_summary` in
    place of `overall`, `attributes` and `consistency` (docs/multilabel.md)."""
    head = {
        **header(command),
        "task": body["task"],
        "config": dict(config),
        "inputs": dict(inputs),
        "model": None if model is None else dict(model),
    }
    if "findings" in body:
        return {
            **head,
            "findings": body["findings"],
            "findings_summary": body["findings_summary"],
            **({"underdiagnosis": body["underdiagnosis"]} if "underdiagnosis" in body else {}),
            "gate": None,
        }
    return {
        **head,
        "overall": body["overall"],
        "attributes": body["attributes"],
        "consistency": body["consistency"],
        "gate": None,
    }


@dataclass
class AuditReport:
    """An audit: results.json's content, the statistics, the manifest and companion files.

    Built by the workflows (fairaudit.workflows) and returned by the Python API
    (fairaudit.audit, audit_model, audit_segmentation); nothing is written until `save`.
    `result` is None for a report read back from a results.json (`load`): its views work,
    the gate needs the statistics.
    """

    data: dict[str, Any]
    result: AuditResult | None = None
    manifest: ManifestSpool | str | None = None
    #: Files beside results.json, by name in the output folder: text to write, or a file or
    #: folder to copy (a model run's predictions.csv and pred_masks/ made in a private folder).
    companions: dict[str, str | Path] = field(default_factory=dict)
    #: Objects whose lifetime the companions depend on (a temporary folder).
    _keep: list[Any] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ the parts
    @property
    def task(self) -> str:
        return str(self.data["task"])

    @property
    def gate_outcome(self) -> dict[str, Any] | None:
        """results.json's `gate` (None without a policy)."""
        return self.data.get("gate")

    @property
    def passed(self) -> bool | None:
        """Did the gate let the release through? None without a gate."""
        gate = self.gate_outcome
        return None if gate is None else bool(gate["passed"])

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this audit: 1 when the gate did not pass (failed, or
        inconclusive under on_inconclusive = "fail"), else 0 (docs/ci.md)."""
        return 1 if self.passed is False else 0

    def to_dict(self) -> dict[str, Any]:
        """results.json as a dict (a deep copy: changing it leaves the report as it is)."""
        return copy.deepcopy(self.data)

    def to_json(self) -> str:
        """results.json's text, as the CLI writes it."""
        from fairaudit.report.writers import results_to_json

        return results_to_json(self.data)

    # ------------------------------------------------------------------ attaching
    def attach_gate(self, policy: GatePolicy | None) -> None:
        """Judge the policy on this report and record the outcome in results.json's `gate`."""
        if policy is not None:
            self.data["gate"] = self.gate(policy)

    def attach(self, key: str, value: Any) -> None:
        """Add a top-level section (baseline, discovered, provenance) in the order attached."""
        self.data[key] = value

    # ------------------------------------------------------------------ views
    def findings(self) -> list[str]:
        """The findings of a multi-label audit (--findings), in results.json's order; [] for
        a single-label audit."""
        return [f["finding"] for f in self.data.get("findings") or []]

    def _block(self, finding: str | None) -> Mapping[str, Any]:
        """What holds `overall` and `attributes`: results.json itself, or one finding's entry
        of a multi-label audit (which then must be named)."""
        if "findings" not in self.data:
            if finding is not None:
                raise KeyError(f"finding={finding!r}: this is a single-label audit (it has no findings)")
            return self.data
        if finding is None:
            raise KeyError(
                f"a multi-label audit: name one of its findings, finding=... ({', '.join(self.findings())})"
            )
        for f in self.data["findings"]:
            if f["finding"] == finding:
                return f
        raise KeyError(f"{finding!r} is not an audited finding; audited: {', '.join(self.findings())}")

    def attributes(self, finding: str | None = None) -> list[str]:
        """The audited attributes and intersections, in results.json's order (of `finding`'s
        audit in a multi-label audit; every finding has the same)."""
        if finding is None and "findings" in self.data:
            finding = next(iter(self.findings()), None)
            if finding is None:
                return []
        return [a["name"] for a in self._block(finding)["attributes"]]

    def _attribute(self, name: str, finding: str | None = None) -> Mapping[str, Any]:
        for a in self._block(finding)["attributes"]:
            if a["name"] == name:
                return a
        raise KeyError(
            f"{name!r} is not an audited attribute; audited: {', '.join(self.attributes(finding))}"
        )

    def by_group(self, attribute: str, finding: str | None = None) -> pd.DataFrame:
        """One row per group of `attribute` (an intersection by its name, e.g. "sex×race"):
        n, n_positive, whether it is small and the reference, then per metric its value,
        interval and the interval's method (columns METRIC, METRIC_ci_low, METRIC_ci_high,
        METRIC_method, METRIC_reason). A multi-label audit: of `finding`."""
        import pandas as pd

        attr = self._attribute(attribute, finding)
        rows = []
        for g in attr["groups"]:
            row: dict[str, Any] = {
                "group": g["group"],
                "n": g.get("n"),
                "n_positive": g.get("n_positive"),
                "small": g.get("small"),
                "reference": g["group"] == attr["reference"],
            }
            for metric, est in g.get("metrics", {}).items():
                row.update(_estimate_columns(metric, est))
            rows.append(row)
        return pd.DataFrame(rows)

    def overall(self, finding: str | None = None) -> pd.DataFrame:
        """One row per metric on the whole audited set (of `finding` in a multi-label audit):
        value and interval."""
        import pandas as pd

        metrics = self._block(finding)["overall"]["metrics"]
        return pd.DataFrame([{"metric": m, **_estimate_columns("", est)} for m, est in metrics.items()])

    def comparisons(self) -> pd.DataFrame:
        """Every comparison row of every attribute: group against the reference per metric,
        difference and ratio with intervals, the test, its p-value and the adjusted p-value.
        A multi-label audit: every finding's, with a `finding` column first."""
        import pandas as pd

        blocks = self.data.get("findings") or [self.data]
        rows = []
        for block in blocks:
            for attr in block["attributes"]:
                for c in attr.get("comparisons", []):
                    row: dict[str, Any] = {"finding": block["finding"]} if "finding" in block else {}
                    row["attribute"] = attr["name"]
                    for key, value in c.items():
                        if isinstance(value, Mapping) and "value" in value:
                            row.update(_estimate_columns(key, value))
                        elif not isinstance(value, (Mapping, list)):
                            row[key] = value
                    within = c.get("within")
                    if isinstance(within, Mapping):  # --within: the pooled within-stratum difference
                        row.update(_estimate_columns("within_difference", within.get("difference") or {}))
                        row["within_test"], row["within_p_value"] = within.get("test"), within.get("p_value")
                    rows.append(row)
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ the gate
    def gate(self, policy: GatePolicy | Path | str) -> dict[str, Any]:
        """The gate's outcome under `policy` (a GatePolicy or a TOML file), as results.json's
        `gate` holds it; nothing is written and the report is unchanged."""
        from fairaudit.errors import InputError
        from fairaudit.gate import GatePolicy, apply_gate, check_policy_task, load_policy

        if not isinstance(policy, GatePolicy):
            path = policy
            policy = load_policy(path)
            check_policy_task(policy, self.task, path)
        if self.result is None:
            raise InputError(
                "this report was read from a results.json and holds no statistics to judge a new "
                "policy on; rerun the audit (the gate recorded in it is report.gate_outcome)."
            )
        return apply_gate(self.result, policy, baseline=self.data.get("baseline"))

    # ------------------------------------------------------------------ review
    def add_review(
        self,
        title: str | None = None,
        context: Path | str | None = None,
        reference_population: Path | str | None = None,
    ) -> AuditReport:
        """Record what `--title`, `--context FILE.md` and `--reference-population FILE.csv`
        record on the command line (docs/reports.md): the title, the context read from its
        Markdown file, and the tests of the group shares against the reference population.
        The reports and results.json written afterwards show them; returns the report.
        A bad file raises InputError naming it before anything is changed."""
        from fairaudit.report.review_view import apply_review, load_review

        review = load_review(title, context, reference_population)
        if review:
            apply_review(self.data, review)
        return self

    # ------------------------------------------------------------------ files
    def write(self, outs: Any, formats: Iterable[str] = DEFAULT_FORMATS) -> dict[str, Path]:
        """Write results.json, the reports in `formats`, manifest.csv and the companion files
        into an open output set (fairaudit._util.atomic.output_set); their final paths."""
        from fairaudit._util.atomic import atomic_write_text
        from fairaudit.report.writers import write_reports

        formats = tuple(dict.fromkeys(["json", *formats]))
        files = write_reports(self.data, outs.staging, formats)
        if self.manifest is not None:
            path = outs.path("manifest.csv")
            if isinstance(self.manifest, str):
                atomic_write_text(path, self.manifest)
            else:
                self.manifest.save(path)
            files["manifest"] = path
        for name, content in self.companions.items():
            path = outs.path(name)
            if isinstance(content, str):
                atomic_write_text(path, content)
            elif Path(content).is_dir():
                shutil.copytree(content, path, dirs_exist_ok=True)
            else:
                shutil.copyfile(content, path)
            files[_companion_key(name)] = path
        return {k: outs.final(p) for k, p in files.items()}

    def save(self, out: Path | str, formats: Iterable[str] = DEFAULT_FORMATS) -> dict[str, Path]:
        """Write the files the CLI writes into the folder `out` (created if missing), as one
        set: results.json, the reports in `formats` (any of json, md, html, junit),
        manifest.csv and, for model runs and segmentation audits, their companions. Returns
        each file's path by kind."""
        from fairaudit._util.atomic import output_set
        from fairaudit.errors import InputError

        formats = tuple(formats)
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise InputError(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}.")
        folders = tuple(n for n, c in self.companions.items() if not isinstance(c, str) and Path(c).is_dir())
        with output_set(Path(out), folders=folders) as outs:
            return self.write(outs, formats)

    @classmethod
    def load(cls, path: Path | str) -> AuditReport:
        """A report read back from a results.json (validated against the schema): its views
        and to_dict work; the statistics are not in the file, so `gate` needs a rerun."""
        from fairaudit.report.loading import load_results

        return cls(load_results(Path(path)))

    def __repr__(self) -> str:
        inputs = self.data.get("inputs", {})
        gate = self.gate_outcome
        verdict = "no gate" if gate is None else f"gate {gate['outcome']}"
        findings = f"findings={self.findings()}, " if "findings" in self.data else ""
        return (
            f"AuditReport(task={self.task!r}, n_included={inputs.get('n_included')}, "
            f"{findings}attributes={self.attributes()}, {verdict})"
        )


def _companion_key(name: str) -> str:
    """The key `write` returns a companion under (the CLI's historical names)."""
    return {
        "segmentation_cases.csv": "cases",
        "predictions.csv": "predictions",
        "pred_masks": "pred_masks",
    }.get(name, name)


def _estimate_columns(prefix: str, est: Mapping[str, Any]) -> dict[str, Any]:
    """An estimate's value, interval bounds, method and reason as flat columns."""
    ci = est.get("ci") or [None, None]
    pre = f"{prefix}_" if prefix else ""
    return {
        prefix or "value": est.get("value"),
        f"{pre}ci_low": ci[0],
        f"{pre}ci_high": ci[1],
        f"{pre}method": est.get("method"),
        f"{pre}reason": est.get("reason"),
    }
