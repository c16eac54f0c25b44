"""The shipped demonstration bundles: load, verify, carry a model card, stay small."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fairaudit.models import list_bundled, load_bundle, resolve_bundled  # noqa: E402
from fairaudit.models.preprocessing import prepare_image  # noqa: E402

EXPECTED = {"cxr_finding_classifier": "classification", "cxr_lung_segmenter": "segmentation"}


def test_bundled_names() -> None:
    assert set(EXPECTED) <= set(list_bundled())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundle_loads_and_has_card(name: str) -> None:
    folder = resolve_bundled(name)
    bundle = load_bundle(folder)  # verifies the sha256
    meta = bundle.meta
    assert meta["task"] == EXPECTED[name]
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "not for clinical use" in card.lower() and "sample-data" in card
    for val in meta["validation"].get("findings") or [meta["validation"]]:
        assert val.get("finding", "") in card
        for attr in val["attributes"]:
            for g in attr["groups"]:
                assert g["group"] in card
    image = np.random.default_rng(0).normal(1000, 100, size=(112, 112)).astype(np.float32)
    x = torch.from_numpy(prepare_image(image, (3.0, 3.0), meta["preprocessing"]))[None]
    out = bundle.model(x)
    h, w = meta["preprocessing"]["input_size"]
    # The classifier is multi-label: one output per class of model.json (issue 21, point 1).
    k = len(meta["classes"])
    assert out.shape == ((1, k) if EXPECTED[name] == "classification" else (1, 2, h, w))


def test_bundles_are_small() -> None:
    total = sum(p.stat().st_size for n in EXPECTED for p in resolve_bundled(n).iterdir())
    assert total < 5 * 2**20


def test_classifier_learned_every_finding() -> None:
    """Each finding learned (validation AUROC interval above chance), none perfectly: the
    sample cohort's findings are subtle on purpose (issue 21, point 10)."""
    meta = load_bundle(resolve_bundled("cxr_finding_classifier")).meta
    assert meta["multilabel"] is True and len(meta["classes"]) >= 6 and "No Finding" in meta["classes"]
    assert [f["finding"] for f in meta["validation"]["findings"]] == meta["classes"]
    for f in meta["validation"]["findings"]:
        auroc = f["overall"]["metrics"]["auroc"]
        assert auroc["ci"][0] > 0.5 and auroc["value"] < 0.99, f["finding"]
