"""Patient-level split: no patient on both sides, strata proportions kept, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from fairaudit.train.split import patient_split, strata_of


def _cohort(n_patients: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    patients, labels, race = [], [], []
    for p in range(n_patients):
        k = 1 + int(rng.random() < 0.3)  # some patients have a follow-up image
        lab = int(rng.random() < 0.3)
        grp = rng.choice(["A", "B", "C"], p=[0.5, 0.2, 0.3])
        for _ in range(k):
            patients.append(f"P{p:04d}")
            labels.append(lab)
            race.append(grp)
    return np.array(patients), np.array(labels), np.array(race)


def test_no_patient_on_both_sides() -> None:
    patients, labels, race = _cohort()
    tr, va = patient_split(patients, strata_of({"race": race}, labels), val_fraction=0.25, seed=3)
    assert set(patients[tr]).isdisjoint(set(patients[va]))
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(patients)))


def test_strata_proportions_and_seed() -> None:
    patients, labels, race = _cohort(400)
    strata = strata_of({"race": race}, labels)
    tr, va = patient_split(patients, strata, val_fraction=0.2, seed=1)
    # each stratum sends round(0.2 * its patients) to validation (hand expectation)
    for s in np.unique(strata):
        n_pat = len(set(patients[strata == s]))
        assert len(set(patients[va][strata[va] == s])) == int(round(0.2 * n_pat))
    tr2, va2 = patient_split(patients, strata, val_fraction=0.2, seed=1)
    assert np.array_equal(va, va2)
    _, va3 = patient_split(patients, strata, val_fraction=0.2, seed=2)
    assert not np.array_equal(va, va3)


def test_small_strata_get_one_each_side() -> None:
    patients = np.array(["a", "b", "c", "d"])
    strata = np.array(["x", "x", "y", "y"])
    tr, va = patient_split(patients, strata, val_fraction=0.1, seed=0)
    assert len(va) == 2 and set(strata[va]) == {"x", "y"}


def test_bad_fraction() -> None:
    with pytest.raises(ValueError):
        patient_split(np.array(["a"]), np.array(["x"]), val_fraction=1.0)
