"""Which output of a multi-output classifier a single-label audit uses (no torch here).

A multi-output model (model.json `classes`, fairaudit.models.loading.multilabel_outputs)
gives one probability per class. `--label-column X` audits the output named X (names
compared without case, spaces or punctuation: "No Finding" == "no_finding"); a label column
that names no output but says "a finding is present" (`finding`, `any_finding`,
`abnormal`, and the default `label`) is audited against 1 - P(No Finding) when the model has
a No Finding output
(docs/models.md). Anything else is refused before the model runs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fairaudit.errors import InputError, arg

#: Label columns that mean "some finding is present": the complement of No Finding.
ANY_FINDING = ("finding", "any_finding", "abnormal", "label")
NO_FINDING_NAMES = ("No Finding", "no_finding")


def fold(name: str) -> str:
    """A name without case, spaces or punctuation (how outputs and columns are matched)."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def output_for(outputs: list[str], label_column: str) -> tuple[str, bool]:
    """(the output a single-label audit of `label_column` uses, whether it is its complement).

    InputError (exit 2) when no output fits, naming the outputs.
    """
    folded = {fold(o): o for o in outputs}
    if fold(label_column) in folded:
        return folded[fold(label_column)], False
    if fold(label_column) in {fold(a) for a in ANY_FINDING}:
        for name in NO_FINDING_NAMES:
            if fold(name) in folded:
                return folded[fold(name)], True
    raise InputError(
        f"{arg('label_column')} {label_column}: the model has one output per class "
        f"({', '.join(outputs)}) and none is named {label_column}.",
        hint=f"Pass {arg('label_column')} with one of them, or {arg('findings')} all to audit every one.",
        argument="label_column",
    )


def single_score(
    by_output: Mapping[str, np.ndarray], outputs: list[str], label_column: str
) -> tuple[np.ndarray, str]:
    """(the scores a single-label audit of `label_column` uses, how they were made: the
    output's name, or "1 - <No Finding output>")."""
    name, complement = output_for(outputs, label_column)
    scores = np.asarray(by_output[name], dtype=np.float64)
    if complement:
        return 1.0 - scores, f"1 - {name}"
    return scores, name
