"""`fairaudit train --findings` (issue 21, point 1): a multi-label classifier, one sigmoid
output per finding column, uncertain and blank labels left out of the loss (U-Ignore).

The loss is checked against scikit-learn's log_loss on the known labels; the bundle against
the labels file's own columns; the loaded model against torch run on the same module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from sklearn.metrics import log_loss  # noqa: E402

from fairaudit.train.loop import masked_bce  # noqa: E402

from _helpers import cli  # noqa: E402


def test_masked_bce_is_the_log_loss_of_the_known_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 3))
    y = rng.integers(0, 2, size=(12, 3)).astype(float)
    y[rng.random((12, 3)) < 0.3] = np.nan  # uncertain or blank
    known = np.isfinite(y)
    p = 1 / (1 + np.exp(-logits[known]))
    expected = log_loss(y[known], p, labels=[0, 1])
    got = masked_bce(torch.from_numpy(logits), torch.from_numpy(y)).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_train_findings_all_makes_a_multi_output_bundle(make_cohort, tmp_path: Path) -> None:
    cohort = make_cohort(40, 32, 5)
    out = tmp_path / "bundle"
    res = cli.invoke(
        ["train", str(cohort / "images"), "--task", "classification", "--demographics",
         str(cohort / "demographics.csv"), "--labels", str(cohort / "findings.csv"), "--findings", "all",
         "--attribute", "race", "--epochs", "1", "--batch-size", "16", "--input-size", "32x32",
         "--width", "4", "--bootstrap", "20", "--device", "cpu", "--threads", "1", "--out", str(out), "-q"],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "model.json").read_text())
    columns = list(pd.read_csv(cohort / "findings.csv").columns[1:])
    assert meta["classes"] == columns and meta["multilabel"] is True
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(columns)
    assert [f["finding"] for f in meta["validation"]["findings"]] == columns
    assert meta["architecture"]["kwargs"]["num_outputs"] == len(columns)

    from fairaudit.models.bundle import load_bundle
    from fairaudit.models.loading import load_predictor

    pred = load_predictor(str(out), "cpu")
    assert pred.outputs == columns
    x = np.random.default_rng(1).random((3, *meta["network_data_format"]["inputs"]["image"]["spatial_shape"]))
    x = np.repeat(x[:, None], meta["network_data_format"]["inputs"]["image"]["num_channels"], axis=1)
    x = x.astype(np.float32)
    with torch.no_grad():
        direct = torch.sigmoid(load_bundle(out).model.eval()(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(pred.predict(x), direct, rtol=1e-5, atol=1e-6)
    # The fairness penalties train one finding: refused with --findings (exit 2).
    res = cli.invoke(
        ["train", str(cohort / "images"), "--demographics", str(cohort / "demographics.csv"), "--labels",
         str(cohort / "findings.csv"), "--findings", "all", "--attribute", "race", "--fairness",
         "demographic_parity", "--epochs", "1", "--out", str(tmp_path / "no"), "-q"],
        columns=None,
    )  # fmt: skip
    assert res.exit_code == 2 and "--fairness none" in cli.flat(res.output)
