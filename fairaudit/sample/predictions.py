"""A synthetic predictions cohort with a planted, known disparity.

Cases come from two kinds of site: fixed digital units and a portable unit whose images
are noisier. Site correlates with race (group "C" is imaged on the portable unit far more
often), and the model separates classes less well on portable images, so group C gets a
lower TPR and AUROC. Sex is drawn independently of everything: an audit should find no
disparity by sex beyond chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

RACES = ("A", "B", "C")
SITES = ("fixed_1", "fixed_2", "portable")


def synthetic_predictions(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, demographics) frames joined by `sop_instance_uid`."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"1.2.826.0.1.3680043.10.1{seed:03d}.{i + 1}" for i in range(n)])
    sex = rng.choice(["F", "M"], size=n)
    race = rng.choice(RACES, size=n, p=[0.5, 0.3, 0.2])
    p_portable = np.where(race == "C", 0.7, 0.15)
    portable = rng.random(n) < p_portable
    fixed = rng.choice(SITES[:2], size=n)
    site = np.where(portable, SITES[2], fixed)
    age_group = rng.choice(["18-39", "40-64", "65+"], size=n, p=[0.3, 0.45, 0.25])
    label = (rng.random(n) < 0.3).astype(int)
    separation = np.where(portable, 0.9, 2.2)
    logit = rng.normal(0.0, 1.0, n) + separation * label - 1.2
    score = np.round(1.0 / (1.0 + np.exp(-logit)), 6)
    preds = pd.DataFrame({"sop_instance_uid": ids, "label": label, "score": score})
    demo = pd.DataFrame(
        {"sop_instance_uid": ids, "sex": sex, "age_group": age_group, "race": race, "site": site}
    )
    return preds, demo


def write_sample_predictions(out_dir: Path, n: int = 2000, seed: int = 0) -> tuple[Path, Path]:
    """Write predictions.csv and demographics.csv into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    preds, demo = synthetic_predictions(n, seed)
    p, d = out_dir / "predictions.csv", out_dir / "demographics.csv"
    preds.to_csv(p, index=False)
    demo.to_csv(d, index=False)
    return p, d
