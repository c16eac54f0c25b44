"""model_card.json and the regulatory cross-reference (issue 23, point 3): the card validates
against its schema, its numbers are results.json's, and every cross-reference item names a
source and date and points at sections report.html has."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fairaudit.report import regulatory
from fairaudit.report.html import render_html
from fairaudit.report.model_card import model_card, render_model_card
from fairaudit.report.regulatory import COVERED, NOT_COVERED, PARTLY, crossref, load_items
from fairaudit.report.writers import write_reports

from _helpers.review import race_attribute, results

SCHEMA = json.loads(resources.files("fairaudit.schema").joinpath("model_card.schema.json").read_text("utf-8"))


def _data(**extra: Any) -> dict[str, Any]:
    data = results(race_attribute())
    data["overall"] = {"n": 270, "metrics": {"tpr": {"value": 0.93, "ci": [0.88, 0.96], "method": "wilson"}}}
    data.update(extra)
    return data


def test_the_card_validates_and_copies_results_numbers() -> None:
    data = _data(title="T", context="Intended use: triage.")
    card = json.loads(render_model_card(data))
    jsonschema.validate(card, SCHEMA)
    assert card["title"] == "T" and card["intended_use"] == "Intended use: triage."
    slices = {(s["attribute"], s["group"]): s for s in card["quantitative_analysis"]["slices"]}
    for attribute in data["attributes"]:
        for g in attribute["groups"]:
            row = slices[(attribute["name"], g["group"])]
            assert row["n"] == g["n"]
            for metric, estimate in g["metrics"].items():
                assert row["metrics"][metric]["value"] == estimate["value"]
                assert row["metrics"][metric]["ci"] == estimate["ci"]
    assert card["quantitative_analysis"]["overall"][0]["metrics"]["tpr"]["ci"] == [0.88, 0.96]
    [comparison] = card["quantitative_analysis"]["comparisons"]
    assert comparison["difference"]["value"] == -0.15 and comparison["p_adjusted"] == 0.08
    assert comparison["min_detectable_difference"] == 0.23
    race = card["data"]["population"][0]
    assert [g["n"] for g in race["groups"]] == [100, 80, 90] and race["groups"][0]["share"] == pytest.approx(
        100 / 270
    )
    assert card["key_findings"][0]["sentence"].startswith("Sensitivity for race = C is 0.850")


def test_a_multilabel_card_names_each_finding() -> None:
    data = _data()
    data["attributes"] = []
    data["findings"] = [
        {"finding": "Edema", "overall": {"n": 9, "metrics": {}}, "attributes": [race_attribute()]}
    ]
    card = model_card(data)
    jsonschema.validate(card, SCHEMA)
    assert {s["finding"] for s in card["quantitative_analysis"]["slices"]} == {"Edema"}


def test_the_card_is_written_beside_results_json(tmp_path: Path) -> None:
    files = write_reports(_data(), tmp_path, ["json"])
    assert set(files) == {"json", "model_card"} and (tmp_path / "model_card.json").is_file()


# The numbering of the primary texts (docs/reports.md, "Regulatory cross-reference"): the FDA
# draft guidance's content sections and appendices (January 2025), CLAIM 2024's 44 items and
# TRIPOD+AI's 27 items with their parts (BMJ 2024;385:e078378, the checklist).
FDA_SECTIONS = {"V", "VI.A", "VI.B", "VII", "VIII", "IX", "X.A", "XI", "XII", "XIII"}
CLAIM_2024_ITEMS = 44
TRIPOD_AI_ITEMS = {
    *"1 2 3a 3b 3c 4 5a 5b 6a 6b 6c 7 8a 8b 8c 9a 9b 9c 10 11".split(),
    *"12a 12b 12c 12d 12e 12f 12g 13 14 15 16 17 18a 18b 18c 18d 18e 18f 19".split(),
    *"20a 20b 20c 21 22 23a 23b 24 25 26 27a 27b 27c".split(),
}


def test_every_item_has_a_source_a_date_and_known_frameworks() -> None:
    _, items = load_items()
    frameworks = {i["framework"] for i in items}
    assert frameworks == {"FDA draft guidance", "EU AI Act", "CLAIM 2024", "TRIPOD+AI"}
    refs = {i["reference"] for i in items if i["framework"] == "EU AI Act"}
    assert refs == {"Art. 10(2)(f)", "Art. 10(2)(g)", "Art. 10(2)(h)", "Art. 10(3)", "Art. 10(4)"}
    assert all(i["source"] and i["date"] and i["checked"] and len(i["paraphrase"]) < 400 for i in items)
    assert len({i["id"] for i in items}) == len(items)


def test_every_reference_is_numbered_as_in_its_source() -> None:
    _, items = load_items()
    for item in items:
        ref = item["reference"]
        if item["framework"] == "FDA draft guidance":
            assert re.match(r"Section (\S+) ", ref) and ref.split()[1] in FDA_SECTIONS, ref
        elif item["framework"] == "CLAIM 2024":
            assert 1 <= int(re.match(r"Item (\d+) \(", ref).group(1)) <= CLAIM_2024_ITEMS, ref
        elif item["framework"] == "TRIPOD+AI":
            assert re.match(r"Item (\w+) \(", ref).group(1) in TRIPOD_AI_ITEMS, ref
    # Demographics by data partition is CLAIM 2024's item 36 (item 34 in CLAIM 2020).
    claim = {i["reference"].split(" (")[0]: i["paraphrase"] for i in items if i["framework"] == "CLAIM 2024"}
    assert "partition" in claim["Item 36"]


def test_the_status_follows_what_results_json_holds() -> None:
    bare = {i["id"]: i for i in crossref(_data())["items"]}
    assert bare["eu-ai-act-10-3"]["status"] == NOT_COVERED and bare["eu-ai-act-10-3"]["needed"]
    assert bare["tripod-ai-23a"]["status"] == COVERED and not bare["tripod-ai-23a"]["needed"]
    given = _data(
        context="x", population={"reference": {"source": "r.csv", "correction": "holm", "attributes": []}}
    )
    full = {i["id"]: i for i in crossref(given)["items"]}
    assert full["eu-ai-act-10-3"]["status"] == PARTLY  # tested, but label errors are not audited
    assert full["tripod-ai-5a"]["status"] == PARTLY  # the development data are not audited
    assert full["tripod-ai-5a"]["needed"] and "context" not in bare["tripod-ai-3c"]["sections"]


def test_a_condition_met_covers_an_item_unless_it_says_partly(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"framework": "EU AI Act", "source": "s", "date": "d", "reference": "r", "paraphrase": "p"}
    items = (
        {**base, "id": "a", "sections": ["context"], "covered": "context", "needed": "n"},
        {
            **base,
            "id": "b",
            "sections": ["context"],
            "covered": "context",
            "when_met": "partly",
            "needed": "n",
        },
    )
    monkeypatch.setattr(regulatory, "load_items", lambda: ({}, items))
    bare = {i["id"]: i for i in crossref(_data())["items"]}
    given = {i["id"]: i for i in crossref(_data(context="x"))["items"]}
    assert bare["a"]["status"] == bare["b"]["status"] == NOT_COVERED and bare["a"]["sections"] == []
    assert (
        given["a"]["status"] == COVERED
        and given["a"]["needed"] == ""
        and given["a"]["sections"] == ["context"]
    )
    assert given["b"]["status"] == PARTLY and given["b"]["needed"] == "n"


def test_every_section_named_is_in_report_html() -> None:
    page = render_html(_data(context="x"))
    for item in crossref(_data(context="x"))["items"]:
        for section in item["sections"]:
            anchor = "attribute-1" if section == "attributes" else section
            assert f'id="{anchor}"' in page, (item["id"], section)
