"""Multi-label audit speed: one `--findings` audit of 14 findings against 14 single-label
audits of the same columns (the baseline: what a user had to run before), in this process.

A CheXpert-like cohort of 100,000 records (14 findings with 1 / 0 / -1 / blank labels and
one score column each, sex x race x age band, 2 records per patient), audited end to end
through the Python API (`fairaudit.audit`, the CLI's code without writing files) with
B = 2,000 and every metric, interval and test. Target (issue 21): the multi-label audit
within 3 minutes on 2 cores. Prints both wall times and their ratio.

    .venv/bin/python benchmarks/multilabel.py [--n 100000] [--findings 14] [--bootstrap 2000]
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
import pandas as pd

log = logging.getLogger("bench")

CHEXPERT = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)  # fmt: skip


def make_cohort(folder: Path, n: int, findings: int, seed: int = 0) -> list[str]:
    """Write labels.csv, predictions.csv and demographics.csv; return the finding names."""
    rng = np.random.default_rng(seed)
    names = list(CHEXPERT[:findings]) + [f"Finding {i}" for i in range(len(CHEXPERT), findings)]
    ids = np.char.add("img", np.arange(n).astype(str))
    labels: dict[str, object] = {"Path": ids}
    preds: dict[str, object] = {"Path": ids}
    for j, name in enumerate(names):
        y = (rng.random(n) < 0.05 + 0.3 * rng.random()).astype(int)
        z = np.where(y == 1, 1.0, -1.0) * (0.8 + 0.05 * j) + rng.normal(0.0, 1.0, n)
        col = y.astype(object)
        col[rng.random(n) < 0.06] = -1
        col[rng.random(n) < 0.04] = ""
        labels[name] = col
        preds[f"score_{name}"] = np.round(1.0 / (1.0 + np.exp(-z)), 4)
    pd.DataFrame(labels).to_csv(folder / "labels.csv", index=False)
    pd.DataFrame(preds).to_csv(folder / "predictions.csv", index=False)
    pd.DataFrame(
        {
            "Path": ids,
            "patient_id": np.char.add("p", (np.arange(n) // 2).astype(str)),
            "sex": rng.choice(["F", "M"], n),
            "race": rng.choice(["A", "B", "C", "D"], n, p=[0.6, 0.2, 0.15, 0.05]),
        }
    ).to_csv(folder / "demographics.csv", index=False)
    return names


def one_finding(n: int, findings: int, bootstrap: int) -> None:
    """One finding's statistics (run_audit) in a family of 1 and in a family of `findings`:
    the permutations raised for the larger family are what a multi-label audit pays."""
    from fairaudit.stats import AuditConfig, run_audit

    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.2).astype(int)
    s = np.round(1 / (1 + np.exp(-(np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1, n)))), 4)
    sex = rng.choice(["F", "M"], n)
    race = rng.choice(["A", "B", "C", "D"], n, p=[0.6, 0.2, 0.15, 0.05])
    attrs = {"sex": sex, "race": race, "sex×race": np.char.add(np.char.add(sex, "×"), race)}
    for factor in (1, findings):
        t0 = time.perf_counter()
        r = run_audit(
            y, s, attrs, AuditConfig(bootstrap=bootstrap, seed=0), family_factor=factor, adjust_now=False
        )
        print(
            f"one finding, {n:,} records, family of {factor} finding(s): {time.perf_counter() - t0:.1f} s "
            f"({r.config['permutations']:,} permutations)"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--findings", type=int, default=14)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--no-baseline", action="store_true", help="skip the 14 single-label runs")
    ap.add_argument(
        "--one-finding",
        action="store_true",
        help="only time one finding's statistics in a family of 1 and of N",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.one_finding:
        one_finding(args.n, args.findings, args.bootstrap)
        return 0
    import fairaudit

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = make_cohort(folder, args.n, args.findings)
        common = dict(
            labels=folder / "labels.csv", demographics=folder / "demographics.csv", id_column="Path",
            attributes=["sex", "race"], intersect=[("sex", "race")], bootstrap=args.bootstrap, seed=0,
        )  # fmt: skip
        t0 = time.perf_counter()
        report = fairaudit.audit(folder / "predictions.csv", findings="all", **common)
        multi = time.perf_counter() - t0
        n_rows = sum(len(a["comparisons"]) for f in report.to_dict()["findings"] for a in f["attributes"])
        print(
            f"multi-label audit: {len(report.findings())} findings x {args.n:,} records, B = {args.bootstrap:,}: "
            f"{multi:.1f} s ({n_rows:,} comparison rows; target <= 180 s)"
        )
        if not args.no_baseline:
            t0 = time.perf_counter()
            for name in names:
                # The single-label way: --label-column FINDING --score-column score_FINDING,
                # with uncertain (-1) and blank labels removed from a copy of the labels first.
                lab = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
                keep = lab[name].isin(["0", "1"])
                lab.loc[keep, ["Path", name]].to_csv(folder / "one.csv", index=False)
                fairaudit.audit(
                    folder / "predictions.csv", label_column=name, score_column=f"score_{name}",
                    **{**common, "labels": folder / "one.csv"},
                )  # fmt: skip
            single = time.perf_counter() - t0
            print(f"{len(names)} single-label audits of the same columns: {single:.1f} s")
            print(f"multi-label / single-label runs: {multi / single:.2f}x")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
