"""Model cards for the bundled demonstration models (written by `make models`).

    python -m fairaudit.models.card BUNDLE_DIR [BUNDLE_DIR ...] --source "fairaudit sample-data ..."

Stamps model.json's intended_use / description / training data source (the weights and
their sha256 are untouched) and writes MODEL_CARD.md from model.json, so every number in
the card is the one stored in the bundle.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from fairaudit._util.formatting import fmt_est

log = logging.getLogger(__name__)

INTENDED_USE = (
    "Demonstration model for validating fairness-audit pipelines (fairaudit's tests, demo and "
    "tutorials). Trained on synthetic phantoms only. NOT for clinical use, NOT a medical device, "
    "and not to be used on real patients' images for any decision."
)
DESCRIPTIONS = {
    "classification": "Chest-radiograph classifier for the synthetic 'finding' (a lesion in one lung): "
    "outputs P(finding) from one radiograph, resized to 64x64, and its high-pass (local contrast) channel.",
    "multilabel": "Multi-label chest-radiograph classifier for the synthetic findings of `fairaudit "
    "sample-data` (Cardiomegaly, Effusion, Consolidation, Atelectasis, Pneumothorax) and No Finding: one "
    "sigmoid output per class, in model.json's `classes` order, from one radiograph resized to 64x64 and its "
    "high-pass (local contrast) channel. A single-label audit of `finding` (any finding present) uses "
    "1 - P(No Finding).",
    "segmentation": "Chest-radiograph lung-field segmenter: a label map with 0 background and 1 lung fields "
    "(the lesion, when present, counts as lung).",
}


def _fmt(est: dict[str, Any] | None) -> str:
    if not est or est.get("value") is None:
        return "–"
    return fmt_est(est, 3)


def render_card(meta: dict[str, Any]) -> str:
    """MODEL_CARD.md text from a bundle's model.json."""
    task = meta["task"]
    tr, ds, val = meta["training"], meta["data_summary"], meta["validation"]
    metrics = ["dice"] if task == "segmentation" else ["auroc", "tpr", "tnr", "accuracy", "ece"]
    lines = [
        f"# Model card: {meta['name']} (version {meta['version']})",
        "",
        "> **Demonstration model for validating fairness-audit pipelines. Not for clinical use.**",
        "> Trained on synthetic phantoms made by `fairaudit sample-data`; it has never seen a real radiograph.",
        "",
        "## What it does",
        "",
        meta.get("description", ""),
        "",
        f"- Task: {task}; classes: {', '.join(meta['classes'])}",
        f"- Architecture: `{meta['architecture']['name']}` {json.dumps(meta['architecture']['kwargs'])}",
        f"- Input: {meta['preprocessing']['input_size'][0]}x{meta['preprocessing']['input_size'][1]}, "
        f"{meta['network_data_format']['inputs']['image']['num_channels']} channel(s) "
        f"({', '.join(meta['network_data_format']['inputs']['image']['channel_def'].values())}); "
        f"preprocessing `{json.dumps(meta['preprocessing'])}` "
        "(applied by fairaudit before inference; the same code ran in training)",
        f"- Weights: `{meta['weights']['file']}`, sha256 `{meta['weights']['sha256']}`",
        "",
        "## Intended use",
        "",
        meta.get("intended_use", INTENDED_USE),
        "",
        "## Training data",
        "",
        f"- Source: {meta.get('training_data', {}).get('source', 'see model.json')}",
        f"- {ds['n_cases']} images; training {ds['n_train']} images of {ds['n_patients_train']} patients, "
        f"validation {ds['n_val']} images of {ds['n_patients_val']} patients (patient-level split, "
        f"no patient in both; {tr['split'].split(', ', 1)[-1]}).",
        "- Planted disparity: the portable unit (noisier, lower contrast) images race C far more often; "
        + (
            "lung borders are less sharp there, so Dice is expected to be slightly lower for race C. "
            if task == "segmentation"
            else "lesions are harder to see there and its supine AP view spreads an effusion into a faint haze, "
            "so the model is expected to miss more findings (effusion most) for race C. "
            if meta.get("multilabel")
            else "lesions are harder to see there, so the model is expected to be less sensitive for race C. "
        )
        + "Sex is independent of everything.",
        "",
        "| attribute | group | train | validation |",
        "|---|---|---:|---:|",
    ]
    for attr, groups in ds["by_group"].items():
        for g, c in groups.items():
            pos = f" ({c['train_positive']} findings)" if isinstance(c.get("train_positive"), int) else ""
            vpos = f" ({c['val_positive']} findings)" if isinstance(c.get("val_positive"), int) else ""
            lines.append(f"| {attr} | {g} | {c['train']}{pos} | {c['val']}{vpos} |")
    lines += [
        "",
        "## Training",
        "",
        f"- {tr['optimizer']}, lr {tr['lr']}, weight decay {tr['weight_decay']}, batch {tr['batch_size']}, "
        f"loss: {tr['loss']}, fairness penalty: {tr['fairness']}, augmentation: {'yes' if tr['augmentation'] else 'no'}",
        f"- Early stopping on the validation loss: best epoch {tr['best_epoch']} of {tr['epochs_run']} "
        f"(maximum {tr['epochs']}, patience {tr['patience']}); {tr['seconds']} s on {tr['device']}, "
        f"torch {tr['torch_version']}, seed {tr['seed']}.",
        f"- Log: `{tr['log']}` (one JSON line per epoch).",
        "",
        "## Validation metrics per group",
        "",
        f"Point estimate [{int(100 * val['ci_level'])}% interval, {val['ci_method']}, {val['bootstrap']} resamples, "
        f"seed {val['seed']}]" + (f"; threshold {val['threshold']}." if "threshold" in val else "."),
        "",
    ]
    for one in val.get("findings") or [val]:
        lines += _validation_table(one, metrics)
    lines += [
        "",
        "## Limitations",
        "",
        "- Synthetic data only: performance on real radiographs is unknown and irrelevant to its purpose.",
        "- Small validation groups give wide intervals; a fairness audit of this model should use "
        "`fairaudit audit` on an independent cohort (for example sample_data/).",
        "",
        "Reproduce with `make models`.",
        "",
    ]
    return "\n".join(lines)


def _validation_table(val: dict[str, Any], metrics: list[str]) -> list[str]:
    """One validation table (of a finding, for a multi-label classifier: headed by its name,
    uncertain and blank labels left out)."""
    lines = []
    if "finding" in val:
        lines += ["", f"### {val['finding']}", ""]
    lines += [
        "| attribute | group | n | " + " | ".join(metrics) + " |",
        "|---|---|---:|" + "---:|" * len(metrics),
        f"| overall | | {val['overall']['n']} | "
        + " | ".join(_fmt(val["overall"]["metrics"].get(m)) for m in metrics)
        + " |",
    ]
    for attr in val["attributes"]:
        for g in attr["groups"]:
            small = " (small)" if g.get("small") else ""
            lines.append(
                f"| {attr['name']} | {g['group']}{small} | {g['n']} | "
                + " | ".join(_fmt(g["metrics"].get(m)) for m in metrics)
                + " |"
            )
    return lines


def finalize(bundle_dir: Path, source: str) -> None:
    path = Path(bundle_dir) / "model.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["intended_use"] = INTENDED_USE
    meta["description"] = DESCRIPTIONS["multilabel" if meta.get("multilabel") else meta["task"]]
    meta["training_data"] = {"source": source, "synthetic": True}
    from fairaudit._util.atomic import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(Path(bundle_dir) / "MODEL_CARD.md", render_card(meta).encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--source", required=True, help="How the training cohort was made.")
    args = parser.parse_args(argv)
    for b in args.bundles:
        finalize(b, args.source)


if __name__ == "__main__":
    main()
