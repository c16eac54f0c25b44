"""Who is in the data (issue 23, point 4): the reference-population file's errors name the
file, row and column (exit 2 in the CLI); the comparison's shares and tests equal a hand
computation and scipy's; the table's counts, shares and missing records come from results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from fairaudit.errors import InputError
from fairaudit.report._templates import get_environment
from fairaudit.report.population import compare_population, population_view, read_reference_population


def _results() -> dict[str, Any]:
    def g(name: str, n: int, pos: int) -> dict[str, Any]:
        return {"group": name, "n": n, "n_positive": pos, "small": False, "metrics": {}}

    return {
        "config": {"correction": "holm", "ci_level": 0.95, "seed": 0},
        "inputs": {"missing_attributes": {"race": 7}},
        "attributes": [
            {"name": "sex", "reference": "F", "groups": [g("F", 156, 40), g("M", 164, 45)]},
            {"name": "race", "reference": "A", "groups": [g("A", 144, 36), g("B", 75, 22), g("C", 94, 25)]},
        ],
    }


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reference.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_comparison_is_scipys_chisquare_corrected_by_holm(tmp_path: Path) -> None:
    shares = read_reference_population(
        _write(tmp_path, "attribute,group,share\nsex,F,0.5\nsex,M,0.5\nrace,A,0.6\nrace,B,0.2\nrace,C,0.2\n")
    )
    out = compare_population(_results(), shares, "reference.csv")
    sex, race = out["attributes"]
    expected_sex = stats.chisquare([156, 164], [160, 160])
    expected_race = stats.chisquare([144, 75, 94], [0.6 * 313, 0.2 * 313, 0.2 * 313])
    assert sex["p_value"] == pytest.approx(expected_sex.pvalue)
    assert race["statistic"] == pytest.approx(expected_race.statistic)
    holm = multipletests([expected_sex.pvalue, expected_race.pvalue], method="holm")[1]
    assert [sex["p_adjusted"], race["p_adjusted"]] == pytest.approx(list(holm))
    assert race["significant"] is True and sex["significant"] is False
    a = race["groups"][0]
    assert a["share"] == pytest.approx(144 / 313) and a["difference"] == pytest.approx(144 / 313 - 0.6)
    assert a["expected_n"] == pytest.approx(0.6 * 313)
    assert out["source"] == "reference.csv"


def test_the_table_counts_shares_and_missing() -> None:
    view = population_view(_results())
    assert view is not None
    race = view["attributes"][1]
    assert race["n"] == "313" and race["missing"] == "7"
    assert [r["share"] for r in race["rows"]] == [
        f"{144 / 313 * 100:.1f}%",
        f"{75 / 313 * 100:.1f}%",
        f"{94 / 313 * 100:.1f}%",
    ]
    assert race["rows"][1]["prevalence"] == [f"{22 / 75:.3f}"]  # no interval stored: n_positive / n


@pytest.mark.parametrize(
    "text, where",
    [
        ("attribute,group\nsex,F\n", "column 'share'"),
        ("attribute,group,share\nsex,F,half\nsex,M,0.5\n", "row 2"),
        ("attribute,group,share\nsex,F,50\nsex,M,50\n", "row 2"),
        ("attribute,group,share\nsex,F,0.5\n,M,0.5\n", "row 3"),
        ("attribute,group,share\nsex,F,0.5\nsex,F,0.5\n", "row 3"),
        ("attribute,group,share\nsex,F,0.3\nsex,M,0.3\n", "sum to 0.600"),
        ("attribute,group,share\n", "lists no groups"),
    ],
)
def test_a_bad_file_names_where_and_what(tmp_path: Path, text: str, where: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        read_reference_population(path)
    message = str(caught.value)
    assert str(path) in message and where in message


def test_an_unknown_attribute_or_a_group_without_a_share_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'age' is not one the audit analysed"):
        compare_population(_results(), {"age": {"young": 1.0}}, "ref.csv")
    with pytest.raises(InputError, match="'C' of 'race' are in the data but have no share"):
        compare_population(_results(), {"race": {"A": 0.5, "B": 0.5}}, "ref.csv")


def _per_class(results: dict[str, Any]) -> dict[str, Any]:
    """_results() as a three-class audit: every class block holds every record of its groups,
    n_positive the records of that true class (docs/multiclass.md, results.json)."""
    positives = {"normal": {"F": 90, "M": 100}, "viral": {"F": 40, "M": 30}, "bacterial": {"F": 26, "M": 34}}

    def block(name: str) -> dict[str, Any]:
        groups = [
            {**g, "n_positive": positives[name][g["group"]]} for g in results["attributes"][0]["groups"]
        ]
        return {"class": name, "n": 320, "attributes": [{**results["attributes"][0], "groups": groups}]}

    top = {**results, "attributes": results["attributes"][:1]}  # n_positive = n at the top (accuracy)
    top["attributes"][0] = {
        **top["attributes"][0],
        "groups": [{**g, "n_positive": g["n"]} for g in top["attributes"][0]["groups"]],
    }
    return {**top, "multiclass": {"classes": list(positives), "per_class": [block(c) for c in positives]}}


def test_a_multiclass_table_has_a_prevalence_per_class_and_speaks_of_classes() -> None:
    view = population_view(_per_class(_results()))
    assert view is not None and view["multiclass"] and not view["multilabel"]
    sex = view["attributes"][0]
    assert sex["n"] == "320" and [r["n"] for r in sex["rows"]] == ["156", "164"]
    assert sex["prevalence_columns"] == ["normal", "viral", "bacterial"]
    # each class's share of the group's records; the three add up to 1
    assert sex["rows"][0]["prevalence"] == [f"{90 / 156:.3f}", f"{40 / 156:.3f}", f"{26 / 156:.3f}"]
    env = get_environment()
    config = {"ci_level": 0.95}
    html = env.get_template("_population.html.j2").render(population=view, config=config)
    md = env.get_template("_population.md.j2").render(population=view, config=config)
    assert "finding" not in html and "each class's prevalence (records of that true class / records" in html
    assert "finding" not in md and "(prevalence per class: records of that true class / records)" in md
    assert "<th>prevalence: viral</th>" in html and "prevalence: viral |" in md


def test_a_multilabel_table_still_speaks_of_findings() -> None:
    results = _results()
    blocks = [{"finding": f, "attributes": results["attributes"]} for f in ("Edema", "Effusion")]
    view = population_view({**results, "findings": blocks})
    assert view is not None and view["multilabel"] and not view["multiclass"]
    html = (
        get_environment()
        .get_template("_population.html.j2")
        .render(population=view, config={"ci_level": 0.95})
    )
    assert "prevalence is per finding" in html and "<th>prevalence: Effusion</th>" in html


def test_a_segmentation_table_speaks_of_non_empty_masks_not_prevalence() -> None:
    """A segmentation case's positive is a ground truth with the structure: the column says
    so (40 of 156 cases -> 0.256), and no condition's prevalence is claimed."""
    view = population_view({**_results(), "task": "segmentation"})
    assert view is not None and view["segmentation"]
    assert view["attributes"][0]["rows"][0]["prevalence"][0].startswith(f"{40 / 156:.3f}")
    env = get_environment()
    config = {"ci_level": 0.95}
    html = env.get_template("_population.html.j2").render(population=view, config=config)
    md = env.get_template("_population.md.j2").render(population=view, config=config)
    assert "<th>non-empty truth</th>" in html and "ground-truth mask is not empty" in html
    assert "| non-empty truth |" in md and "ground-truth mask is not empty" in md
    assert "prevalence" not in html.lower() and "prevalence" not in md.lower()
