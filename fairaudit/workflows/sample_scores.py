"""A trained model's scores for the sample cohort (`fairaudit sample-data --model REF`;
fairaudit.sample.cohort.generate_cohort calls `model_predictions` as its scorer).

The bundled multi-label classifier is run over the cohort's DICOM files as an audit runs it
(fairaudit.models.inference), so sample_data/predictions.csv holds the numbers a model audit
of the same files computes: one `score_<class>` column per output.
Imports torch: only on this path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fairaudit.errors import InputError

log = logging.getLogger(__name__)


def model_predictions(
    model: str, out_dir: Path, sop_uids: list[str], workers: int | None = None
) -> tuple[list[str], dict[str, np.ndarray]]:
    """(the model's classes, class -> scores in `sop_uids` order); a one-output model gives one
    class, "model" (predictions.csv's score_model)."""
    from fairaudit.models.inference import run_inference
    from fairaudit.models.loading import load_predictor

    predictor = load_predictor(model, "cpu", task="classification")
    run = run_inference(
        predictor, Path(out_dir) / "images", workers=workers, progress=False, id_columns=("sop_instance_uid",)
    )
    if run.unreadable:  # pragma: no cover - the cohort's own files always decode
        raise InputError(
            f"the model could not score {len(run.unreadable)} of the cohort's files.", file=model
        )
    where = {uid: i for i, uid in enumerate(run.records.column("sop_instance_uid"))}
    missing = [u for u in sop_uids if u not in where]
    if missing:  # pragma: no cover - every plan is written
        raise InputError(f"{len(missing)} images have no score.", file=str(out_dir))
    order = np.array([where[u] for u in sop_uids])
    if predictor.outputs:
        by_class = {c: np.asarray(run.outputs[c], dtype=np.float64)[order] for c in predictor.outputs}
        return list(predictor.outputs), by_class
    log.info("%s has one output: predictions.csv gets it as score_model", model)
    return ["model"], {"model": np.asarray(run.scores, dtype=np.float64)[order]}
