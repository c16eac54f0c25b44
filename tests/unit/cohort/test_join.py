"""The cohort join: every input row accounted for, exclusions counted, CSV dialects read.

Small CSVs are written by hand so every expected count is known exactly.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairaudit._util.absent import ABSENT
from fairaudit._util.privacy import IdHasher
from fairaudit.cohort.join import MISSING_GROUP, CohortSpec, build_cohort
from fairaudit.cohort.manifest import ManifestSpool
from fairaudit.errors import InputError
from fairaudit.io.tables import read_table
from fairaudit.schema import validate_results

from _helpers import cli

SALT = "test-salt"


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_text(text, encoding="utf-8-sig" if bom else "utf-8", newline="")
    return path


def squash(text: str) -> str:
    """Whitespace removed: rich may wrap a message anywhere there was a space."""
    return re.sub(r"\s+", "", text)


# Predictions (header = spreadsheet row 1, so u1 is row 2).
PREDS = """sop_instance_uid,label,score
u1,0,0.1
u2,1,0.9
u3,0,0.2
u4,1,0.8
u4,0,0.3
u5,1,0.7
u6,0,0.4
u7,1,
u8,0,nan
u9,1,0.6
u10,0,0.35
"""
# u3: no demographics; u4: twice in predictions; u5: twice in demographics;
# u6: sex missing (included, in no sex group); u7 / u8: score missing; u99: demographics
# without a prediction.
DEMO = """sop_instance_uid,sex,race
u1,F,A
u2,M,B
u4,F,A
u5,M,A
u5,M,A
u6,,B
u7,F,A
u8,M,B
u9,F,B
u10,M,A
u99,F,A
"""
N_PRED_ROWS = 11
N_DEMO_ROWS = 11

EXPECTED_EXCLUDED = {
    "predictions.csv: no row in demo.csv (demographics)": 1,
    "predictions.csv: duplicate id in predictions.csv": 2,
    "predictions.csv: duplicate id in demo.csv": 1,
    "predictions.csv: missing score": 2,
    "demo.csv: no prediction for this id": 1,
    "demo.csv: duplicate id": 2,
}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path / "predictions.csv", PREDS), write(tmp_path / "demo.csv", DEMO)


def spec_for(preds: Path, demo: Path | None = None, **kw) -> CohortSpec:
    kw.setdefault("attributes", ["sex", "race"])
    return CohortSpec(predictions=preds, demographics=demo, **kw)


def manifest_rows(cohort) -> list[dict]:
    return cohort.manifest.to_dict("records")


def row_of(cohort, source: str, row: int) -> dict:
    (hit,) = [r for r in manifest_rows(cohort) if r["source"] == source and r["row"] == row]
    return hit


# --- exclusions -----------------------------------------------------------------------


def test_exclusions_are_counted_by_reason(files) -> None:
    preds, demo = files
    cohort = build_cohort(spec_for(preds, demo), IdHasher(SALT))
    assert cohort.n_records == N_PRED_ROWS
    assert cohort.n_included == 5  # u1, u2, u6, u9, u10
    assert {e["reason"]: e["count"] for e in cohort.excluded} == EXPECTED_EXCLUDED
    assert len(cohort.excluded) == len(EXPECTED_EXCLUDED)  # no reason listed twice
    assert cohort.id_column == "sop_instance_uid"
    # u6 has no sex: in the race analysis, in no sex group (issue 21, point 9).
    assert cohort.attributes["sex"].tolist() == ["F", "M", ABSENT, "F", "M"]
    assert cohort.attributes["race"].tolist() == ["A", "B", "B", "B", "A"]
    assert cohort.absent == {"sex": 1}
    assert cohort.labels.tolist() == [0, 1, 0, 1, 0]
    assert cohort.scores.tolist() == [0.1, 0.9, 0.4, 0.6, 0.35]
    assert cohort.has_scores


@pytest.mark.parametrize(
    ("source", "row", "reason"),
    [
        ("predictions.csv", 4, "no row in demo.csv (demographics)"),  # u3
        ("predictions.csv", 5, "duplicate id in predictions.csv"),  # u4, both copies
        ("predictions.csv", 6, "duplicate id in predictions.csv"),
        ("predictions.csv", 7, "duplicate id in demo.csv"),  # u5
        ("predictions.csv", 9, "missing score"),  # u7 (empty)
        ("predictions.csv", 10, "missing score"),  # u8 ("nan")
        ("demo.csv", 5, "duplicate id in demo.csv"),  # u5, both copies
        ("demo.csv", 6, "duplicate id in demo.csv"),
        ("demo.csv", 12, "no prediction for this id"),  # u99
        ("demo.csv", 4, "its prediction row was excluded (see that row)"),  # u4
    ],
)
def test_manifest_status_and_reason(files, source: str, row: int, reason: str) -> None:
    cohort = build_cohort(spec_for(*files), IdHasher(SALT))
    hit = row_of(cohort, source, row)
    assert hit["status"] == "excluded"
    assert hit["reason"] == reason


def test_manifest_lists_every_row_of_every_file_once(files) -> None:
    cohort = build_cohort(spec_for(*files), IdHasher(SALT))
    rows = manifest_rows(cohort)
    assert list(cohort.manifest.columns) == ["source", "row", "id", "status", "reason"]
    assert len(rows) == N_PRED_ROWS + N_DEMO_ROWS
    keys = [(r["source"], r["row"]) for r in rows]
    assert len(set(keys)) == len(keys)
    assert {k for k in keys if k[0] == "predictions.csv"} == {
        ("predictions.csv", i) for i in range(2, N_PRED_ROWS + 2)
    }
    assert {k for k in keys if k[0] == "demo.csv"} == {("demo.csv", i) for i in range(2, N_DEMO_ROWS + 2)}
    included = [r for r in rows if r["status"] == "included"]
    # u1, u2, u6, u9, u10 in both files.
    assert sorted((r["source"], r["row"]) for r in included) == sorted(
        [("predictions.csv", r) for r in (2, 3, 8, 11, 12)] + [("demo.csv", r) for r in (2, 3, 7, 10, 11)]
    )
    assert all(r["reason"] == "" for r in included if (r["source"], r["row"]) != ("predictions.csv", 8))
    assert row_of(cohort, "predictions.csv", 8)["reason"] == "not in: sex groups (missing sex)"
    assert all(r["reason"] for r in rows if r["status"] == "excluded")


def test_a_file_that_changes_between_the_two_reads_is_an_error(files, monkeypatch) -> None:
    """The join reads each file twice (match, then manifest): a file written to in between
    must not give a manifest of two versions."""
    import fairaudit.cohort.join as cohort_module

    _, demo = files
    real = cohort_module.join_codes

    def append_then_join(*args, **kwargs):
        with open(demo, "a", encoding="utf-8") as fh:
            fh.write("u77,F,A\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(cohort_module, "join_codes", append_then_join)
    with pytest.raises(InputError, match="changed while being read") as err:
        build_cohort(spec_for(*files), IdHasher(SALT))
    assert "demo.csv" in str(err.value)


def test_missing_attribute_kept_as_group(files) -> None:
    cohort = build_cohort(spec_for(*files, missing_as_group=True), IdHasher(SALT))
    assert cohort.n_included == 5  # u6 comes back
    assert cohort.attributes["sex"].tolist() == ["F", "M", MISSING_GROUP, "F", "M"]
    assert MISSING_GROUP == "(missing)"
    reasons = {e["reason"]: e["count"] for e in cohort.excluded}
    assert "predictions.csv: missing sex" not in reasons
    assert row_of(cohort, "predictions.csv", 8)["status"] == "included"
    assert row_of(cohort, "demo.csv", 7)["status"] == "included"


def test_missing_attribute_in_same_file_and_missing_id(tmp_path: Path) -> None:
    preds = write(
        tmp_path / "p.csv",
        "patient_id,label,score,sex\nP1,0,0.1,F\nP2,1,0.9,NA\n,1,0.8,M\nP4,0,0.2,M\n",
    )
    cohort = build_cohort(spec_for(preds, attributes=["sex"]), IdHasher(SALT))
    assert cohort.n_included == 3  # P2 (sex NA) stays, in no sex group
    assert cohort.attributes["sex"].tolist() == ["F", ABSENT, "M"]
    assert {e["reason"]: e["count"] for e in cohort.excluded} == {"p.csv: missing patient_id": 1}
    assert len(cohort.manifest) == 4  # demographics in the same file: one file, four rows


def test_all_rows_excluded_is_an_input_error(tmp_path: Path) -> None:
    preds = write(tmp_path / "p.csv", "patient_id,label,score,sex\nP1,0,,F\nP2,1,,\n")
    with pytest.raises(InputError, match="every row was excluded"):
        build_cohort(spec_for(preds, attributes=["sex"]), IdHasher(SALT))


# --- pseudonymized ids ----------------------------------------------------------------


def test_manifest_ids_are_salted_hashes(files) -> None:
    cohort = build_cohort(spec_for(*files), IdHasher(SALT))
    raw = {line.split(",")[0] for line in (PREDS + DEMO).splitlines()[1:]}
    ids = cohort.manifest["id"].tolist()
    assert not raw & set(ids)
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert row_of(cohort, "predictions.csv", 2)["id"] == IdHasher(SALT)("u1")
    assert row_of(cohort, "demo.csv", 2)["id"] == IdHasher(SALT)("u1")


def test_hasher_is_stable_per_salt() -> None:
    assert IdHasher("a")("1.2.3") == IdHasher("a")("1.2.3")
    assert IdHasher("a")("1.2.3") != IdHasher("b")("1.2.3")
    assert IdHasher("a")("1.2.3") != IdHasher("a")("1.2.4")
    # No salt: a random one per hasher, so two runs cannot be linked.
    assert IdHasher()("1.2.3") != IdHasher()("1.2.3")
    assert IdHasher("a", keep_ids=True)("1.2.3") == "1.2.3"


def test_keep_ids_writes_ids_in_clear(files) -> None:
    cohort = build_cohort(spec_for(*files), IdHasher(SALT, keep_ids=True))
    assert row_of(cohort, "predictions.csv", 2)["id"] == "u1"
    assert row_of(cohort, "demo.csv", 12)["id"] == "u99"


# --- CSV dialects ---------------------------------------------------------------------


def test_bom_and_semicolons(tmp_path: Path) -> None:
    preds = write(
        tmp_path / "p.csv", "sop_instance_uid;label;score\nA1;0;0.2\nA2;1;0.7\nA3;1;0.4\n", bom=True
    )
    demo = write(tmp_path / "d.csv", "sop_instance_uid;sex\nA1;F\nA2;M\nA3;F\n", bom=True)
    cohort = build_cohort(spec_for(preds, demo, attributes=["sex"]), IdHasher(SALT))
    assert cohort.id_column == "sop_instance_uid"  # the BOM is not part of the first column name
    assert cohort.n_included == 3
    assert cohort.attributes["sex"].tolist() == ["F", "M", "F"]
    assert cohort.scores.tolist() == [0.2, 0.7, 0.4]


def test_tab_separated(tmp_path: Path) -> None:
    preds = write(tmp_path / "p.tsv", "patient_id\tlabel\tscore\tsex\nP1\t0\t0.2\tF\nP2\t1\t0.9\tM\n")
    cohort = build_cohort(spec_for(preds, attributes=["sex"]), IdHasher(SALT))
    assert cohort.attributes["sex"].tolist() == ["F", "M"]


def test_quoted_newline_field(tmp_path: Path) -> None:
    preds = write(tmp_path / "p.csv", "patient_id,label,score\nP1,0,0.2\nP2,1,0.9\nP3,1,0.6\n")
    demo = write(
        tmp_path / "d.csv",
        'patient_id,comment,sex\nP1,"two\nlines, and a comma",F\nP2,plain,"M"\nP3,x,F\n',
    )
    cohort = build_cohort(spec_for(preds, demo, attributes=["sex"]), IdHasher(SALT))
    assert cohort.n_included == 3
    assert cohort.attributes["sex"].tolist() == ["F", "M", "F"]
    # Rows are records (spreadsheet rows), not physical lines.
    assert sorted(r["row"] for r in manifest_rows(cohort) if r["source"] == "d.csv") == [2, 3, 4]


def test_row_number_after_quoted_newline_is_the_record_row(tmp_path: Path) -> None:
    preds = write(
        tmp_path / "p.csv",
        'patient_id,label,score,note\nP1,0,0.2,"a\nb"\nP2,1,0.9,x\nP3,2,0.6,y\n',
    )
    with pytest.raises(InputError) as info:
        build_cohort(spec_for(preds, attributes=["note"]), IdHasher(SALT))
    assert info.value.row == 4
    assert info.value.column == "label"
    assert info.value.file == "p.csv"


def test_row_number_counts_blank_lines_like_a_spreadsheet(tmp_path: Path) -> None:
    # Line 3 is blank: a spreadsheet shows it as an empty row 3, and "P2,2,..." is row 5.
    preds = write(tmp_path / "p.csv", "patient_id,label,score,sex\nP1,0,0.2,F\n\nP3,1,0.6,M\nP2,2,0.9,M\n")
    with pytest.raises(InputError) as info:
        build_cohort(spec_for(preds, attributes=["sex"]), IdHasher(SALT))
    assert info.value.row == 5


# --- group names survive exactly ------------------------------------------------------

ODD_GROUPS = ("<b>x</b>", "Māori & 女性", 'say "hi"')


def _odd_files(tmp_path: Path) -> tuple[Path, Path]:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["sop_instance_uid", "label", "score"])
    demo = io.StringIO()
    wd = csv.writer(demo, lineterminator="\n")
    wd.writerow(["sop_instance_uid", "grp"])
    for i in range(30):
        w.writerow([f"id{i}", i % 2, 0.8 if i % 2 else 0.3])
        wd.writerow([f"id{i}", ODD_GROUPS[i % 3]])
    return write(tmp_path / "p.csv", out.getvalue()), write(tmp_path / "d.csv", demo.getvalue())


def test_group_names_survive_cohort(tmp_path: Path) -> None:
    preds, demo = _odd_files(tmp_path)
    cohort = build_cohort(spec_for(preds, demo, attributes=["grp"]), IdHasher(SALT))
    assert set(cohort.attributes["grp"].tolist()) == set(ODD_GROUPS)


def test_group_names_survive_to_results_json(tmp_path: Path) -> None:
    preds, demo = _odd_files(tmp_path)
    out = tmp_path / "out"
    res = cli.invoke(["audit", "--predictions", str(preds), "--demographics", str(demo), "--attribute", "grp",
         "--out", str(out), "--bootstrap", "50", "--min-group-size", "5", "--quiet"], columns=None)  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(results)
    (attr,) = results["attributes"]
    assert {g["group"] for g in attr["groups"]} == set(ODD_GROUPS)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "Māori" in html and "女性" in html


# --- CLI level --------------------------------------------------------------------------


def test_cli_counts_lists_and_warns_exclusions(files, tmp_path: Path) -> None:
    preds, demo = files
    out = tmp_path / "out"
    res = cli.audit("--predictions", str(preds), "--demographics", str(demo), "--attribute", "sex",
                    "--min-group-size", "1", "--salt", SALT, bootstrap=50, out=out)  # fmt: skip
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(results)
    assert results["inputs"]["n_records"] == N_PRED_ROWS
    assert results["inputs"]["n_included"] == 5
    assert results["inputs"]["missing_attributes"] == {"sex": 1}
    assert results["attributes"][0]["n_missing"] == 1
    assert sum(g["n"] for g in results["attributes"][0]["groups"]) == 4  # u6 in no sex group
    assert results["overall"]["n"] == 5
    assert {e["reason"]: e["count"] for e in results["inputs"]["excluded"]} == EXPECTED_EXCLUDED
    with (out / "manifest.csv").open(encoding="utf-8", newline="") as fh:
        manifest = list(csv.DictReader(fh))
    assert len(manifest) == N_PRED_ROWS + N_DEMO_ROWS
    assert sum(r["status"] == "included" for r in manifest) == 10
    assert {r["id"] for r in manifest if r["source"] == "demo.csv" and r["row"] == "12"} == {
        IdHasher(SALT)("u99")
    }
    assert "u99" not in (out / "manifest.csv").read_text(encoding="utf-8")
    flat = squash(res.output)
    assert squash("excluded 2 of 11 rows of predictions.csv: missing score") in flat
    assert squash("1 rows of demo.csv have no prediction") in flat


def test_separate_labels_file(tmp_path: Path) -> None:
    preds = write(tmp_path / "p.csv", "patient_id,score,sex\nP1,0.1,F\nP2,0.9,M\nP3,0.4,F\n")
    labels = write(tmp_path / "l.csv", "patient_id,finding\nP2,1\nP1,0\nP7,1\n")
    spec = spec_for(preds, attributes=["sex"], labels=labels, label_column="finding")
    cohort = build_cohort(spec, IdHasher(SALT))
    assert cohort.labels.tolist() == [0, 1]  # joined by id, not by row order
    assert {e["reason"]: e["count"] for e in cohort.excluded} == {
        "p.csv: no row in l.csv (labels)": 1,
        "l.csv: no prediction for this id": 1,
    }
    assert len(cohort.manifest) == 6
    assert row_of(cohort, "l.csv", 4)["reason"] == "no prediction for this id"


def test_manifest_spooled_is_the_frames_csv(files, tmp_path: Path) -> None:
    """The audit spools manifest.csv part by part to disk (memory): the same bytes as the frame's
    CSV, the same sha256 as hashing that text, and the same file once saved."""
    for spec in (
        spec_for(*files),
        spec_for(*files, missing_as_group=True),
        spec_for(*files, attributes=["sex"]),
    ):
        as_frame = build_cohort(spec, IdHasher(SALT))
        with ManifestSpool() as spool:
            spooled = build_cohort(spec, IdHasher(SALT), manifest_spool=spool)
            expected = as_frame.manifest.to_csv(index=False)
            assert spooled.manifest.empty and not as_frame.manifest.empty
            assert spool.text() == expected
            assert spool.sha256() == hashlib.sha256(expected.encode("utf-8")).hexdigest()
            saved = spool.save(tmp_path / "manifest.csv")
            assert saved.read_bytes() == expected.encode("utf-8")
            assert spool.text() == expected  # saving leaves it readable (and appendable)
        assert np.array_equal(spooled.scores, as_frame.scores)


def test_unused_demographic_columns_are_dropped_but_rows_and_messages_stay(tmp_path: Path) -> None:
    """The join keeps only the columns it can use of the demographics (memory); a row whose used
    cells are all empty but whose other cells are not is still a row (in the manifest, with
    its spreadsheet number), and an unknown attribute's message lists every column of the file."""
    preds = write(tmp_path / "p.csv", "sop_instance_uid,label,score\nu1,0,0.1\nu2,1,0.9\nu3,1,0.7\n")
    demo = write(
        tmp_path / "d.csv",
        "sop_instance_uid,sex,site,notes\nu1,F,a,x\n,,b,only other cells\nu2,M,a,y\nu3,F,c,z\n",
    )
    table = read_table(demo, keep=["SOP_Instance_UID", "sex"])
    assert list(table.frame.columns) == ["sop_instance_uid", "sex"]
    assert table.columns == ["sop_instance_uid", "sex", "site", "notes"]
    assert table.rows.tolist() == [2, 3, 4, 5]
    cohort = build_cohort(spec_for(preds, demo, attributes=["sex"]), IdHasher(SALT))
    full = pd.read_csv(demo, dtype=str, keep_default_na=False)  # every record row, read independently
    demo_rows = [r for r in manifest_rows(cohort) if r["source"] == "d.csv"]
    assert sorted(r["row"] for r in demo_rows) == [i + 2 for i in range(len(full))]
    assert row_of(cohort, "d.csv", 3)["status"] == "excluded"
    assert cohort.n_included == 3
    with pytest.raises(InputError) as info:
        build_cohort(spec_for(preds, demo, attributes=["age"]), IdHasher(SALT))
    assert "'site'" in str(info.value) and "'notes'" in str(info.value)


def test_read_table_in_chunks_keeps_every_record_and_its_row(tmp_path: Path, monkeypatch) -> None:
    """With `keep`, the CSV is read in chunks of rows: across chunk boundaries (quoted newlines,
    blank lines, padded cells) the records and their spreadsheet rows are those Python's csv
    module finds."""
    import fairaudit.io.tables as tables

    monkeypatch.setattr(tables, "_CHUNK_ROWS", 3)
    text = (
        "id , sex,notes,site\n"
        'a1, F ,"line\nbreak",x\n'
        "\n"
        "a2,M,,y\n"
        ",,,\n"
        'a3,F,"q,""uoted""",z\n'
        "a4, ,plain,w\n"
        "\n"
        'a5,M,"two\n\nbreaks",v\n'
    )
    path = write(tmp_path / "d.csv", text)
    records = list(csv.reader(io.StringIO(text)))
    header = [c.strip() for c in records[0]]
    expected = [
        (k + 2, dict(zip(header, (c.strip() for c in rec), strict=True)))
        for k, rec in enumerate(records[1:])
        if any(c.strip() for c in rec)
    ]
    table = read_table(path, keep=["ID", "sex"])
    assert table.columns == header and list(table.frame.columns) == ["id", "sex"]
    assert table.rows.tolist() == [row for row, _ in expected]
    assert table.frame.to_dict("records") == [{"id": r["id"], "sex": r["sex"]} for _, r in expected]
    with pytest.raises(InputError, match="no records"):
        read_table(write(tmp_path / "h.csv", "id,sex\n"), keep=["id"])


# --- the join against a plain-Python statement of its rules ------------------------------

_IDS = ["a", "b", "c", "d", "e", ""]


def _reference_join(preds: list[tuple], demo: list[tuple], labs: list[tuple]) -> list[tuple]:
    """(source, row, id, status, reason) per input row, from the rules written out with
    dicts and counters: the first rule that applies gives a prediction row's reason."""
    from collections import Counter

    n_pred, n_demo, n_lab = (
        Counter(p[0] for p in preds),
        Counter(d[0] for d in demo),
        Counter(x[0] for x in labs),
    )
    first_demo = {d[0]: d for d in reversed(demo)}
    first_lab = {x[0]: x for x in reversed(labs)}
    out, used = [], set()
    for row, (ident, score) in enumerate(preds, start=2):
        if ident == "":
            why = "missing sop_instance_uid"
        elif n_pred[ident] > 1:
            why = "duplicate id in predictions.csv"
        elif n_demo[ident] > 1:
            why = "duplicate id in demo.csv"
        elif n_demo[ident] == 0:
            why = "no row in demo.csv (demographics)"
        elif n_lab[ident] > 1:
            why = "duplicate id in labels.csv"
        elif n_lab[ident] == 0:
            why = "no row in labels.csv (labels)"
        elif first_lab[ident][1] == "":
            why = "missing label"
        elif score == "":
            why = "missing score"
        else:
            # A missing sex leaves the record in the audit, out of the sex groups only.
            why = "not in: sex groups (missing sex)" if first_demo[ident][1] == "" else ""
            used.add(ident)
            out.append(("predictions.csv", row, ident, "included", why))
            continue
        out.append(("predictions.csv", row, ident, "excluded", why))
    predicted = set(n_pred)
    for name, rows, counts in (("demo.csv", demo, n_demo), ("labels.csv", labs, n_lab)):
        for row, (ident, _) in enumerate(rows, start=2):
            why = ""
            if ident not in predicted:
                why = "no prediction for this id"
            if counts[ident] > 1:
                why = f"duplicate id in {name}"
            if why == "" and ident not in used:
                why = "its prediction row was excluded (see that row)"
            out.append((name, row, ident, "included" if ident in used else "excluded", why))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    preds=st.lists(
        # (a row with every cell empty is a blank line, not a record)
        st.tuples(st.sampled_from(_IDS), st.sampled_from(["0.25", ""])).filter(lambda r: r != ("", "")),
        min_size=1,
        max_size=8,
    ),
    demo=st.lists(st.tuples(st.sampled_from(_IDS[:-1] + ["f"]), st.sampled_from(["F", "M", ""])), max_size=8),
    labs=st.lists(st.tuples(st.sampled_from(_IDS[:-1] + ["f"]), st.sampled_from(["0", "1", ""])), max_size=8),
    chunk=st.sampled_from([1, 2, 3, 20_000]),
)
def test_join_matches_the_rules_written_out(tmp_path: Path, preds, demo, labs, chunk) -> None:
    import fairaudit.io.tables as tables

    default = tables._CHUNK_ROWS
    tables._CHUNK_ROWS = chunk  # the join reads its inputs a chunk of rows at a time
    try:
        _join_against_the_rules(tmp_path, preds, demo, labs)
    finally:
        tables._CHUNK_ROWS = default


def _join_against_the_rules(tmp_path: Path, preds, demo, labs) -> None:
    def csv_text(header: str, rows: list[tuple]) -> str:
        return header + "\n" + "".join(f"{a},{b}\n" for a, b in rows)

    if not demo or not labs:  # a file with a header and no record is an error of its own
        return
    p = write(tmp_path / "predictions.csv", csv_text("sop_instance_uid,score", preds))
    d = write(tmp_path / "demo.csv", csv_text("sop_instance_uid,sex", demo))
    lab = write(tmp_path / "labels.csv", csv_text("sop_instance_uid,label", labs))
    expected = _reference_join(preds, demo, labs)
    spec = CohortSpec(predictions=p, demographics=d, labels=lab, attributes=["sex"])
    if not any(e[0] == "predictions.csv" and e[3] == "included" for e in expected):
        with pytest.raises(InputError, match="can be audited"):
            build_cohort(spec, IdHasher(keep_ids=True))
        return
    cohort = build_cohort(spec, IdHasher(keep_ids=True))
    got = [
        (r["source"], r["row"], "" if pd.isna(r["id"]) else r["id"], r["status"], r["reason"])
        for r in manifest_rows(cohort)
    ]
    assert sorted(got) == sorted(expected)
    included = [e for e in expected if e[0] == "predictions.csv" and e[3] == "included"]
    assert cohort.n_included == len(included)
    assert cohort.attributes["sex"].tolist() == [dict(reversed(demo))[e[2]] or ABSENT for e in included]


def test_read_header_gives_the_columns_and_the_same_errors(tmp_path: Path) -> None:
    from fairaudit.io.tables import read_header

    path = write(tmp_path / "d.csv", "Id ; Sex;race\nu1;F;A\n")
    assert read_header(path).columns == read_table(path).columns == ["Id", "Sex", "race"]
    assert read_header(path).has("sex") and len(read_header(path).frame) == 0
    with pytest.raises(InputError, match="file not found"):
        read_header(tmp_path / "nope.csv")
    (tmp_path / "latin1.csv").write_bytes("id,sex\nu1,\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_header(tmp_path / "latin1.csv")


def test_chunks_give_the_records_and_spreadsheet_rows_of_the_whole_file(tmp_path: Path, monkeypatch) -> None:
    import fairaudit.io.tables as tables

    text = 'SOP_Instance_UID,sex,age\nu1,F,3\nu2,M,4\n\n , , \n"u3\nx",F,5\nzz,M,\n'
    path = write(tmp_path / "d.csv", text)
    # Python's csv module on the same text: records with a non-empty cell, their line numbers.
    expected = []
    reader = csv.reader(io.StringIO(text))
    next(reader)
    row = 1
    for rec in reader:
        row += 1
        if rec and any(c.strip() for c in rec):
            expected.append((row, rec[0].strip(), rec[1].strip()))
    assert [r for r, *_ in expected] == [2, 3, 6, 7]
    for size in (1, 2, 3, 100):
        monkeypatch.setattr(tables, "_CHUNK_ROWS", size)
        got = [
            (int(r), f.iloc[k, 0], f.iloc[k, 1])
            for f, rows in tables.iter_chunks(path, keep=["sop_instance_uid", "sex"])
            for k, r in enumerate(rows)
        ]
        assert got == expected
        assert [list(f.columns) for f, _ in tables.iter_chunks(path, keep=["sex"])][0] == ["sex"]


@given(
    ids=st.lists(st.sampled_from(["a", "b", "", "1", "1.0", "é", "a ", "x" * 70]), max_size=30),
    cut=st.integers(0, 30),
)
def test_join_codes_are_equal_exactly_for_equal_ids(ids, cut) -> None:
    from fairaudit.cohort.keys import digest, join_codes

    first, second = ids[:cut], ids[cut:]
    codes, n = join_codes([digest(pd.Series(first, dtype=object)), digest(pd.Series(second, dtype=object))])
    flat = np.concatenate(codes)
    assert n == len(set(ids)) and len(codes[0]) == len(first)
    for i in range(len(ids)):
        for j in range(len(ids)):
            assert (flat[i] == flat[j]) == (ids[i] == ids[j])


def test_scores_as_numbers_are_parsed_like_their_text(tmp_path: Path) -> None:
    from fairaudit.io.tables import Table, missing_cells, parse_score

    numbers = pd.Series([0.25, np.nan, 1.0, 0.0])
    text = pd.Series([repr(v) for v in numbers], dtype=object)
    assert missing_cells(numbers).tolist() == missing_cells(text).tolist() == [False, True, False, False]

    def table(col: pd.Series) -> Table:
        frame = pd.DataFrame({"score": col})
        return Table(path=Path("p.csv"), frame=frame, rows=pd.Series(range(2, len(frame) + 2)))

    a, b = parse_score(table(numbers), "score"), parse_score(table(text), "score")
    assert a.equals(b) and a.isna().tolist() == [False, True, False, False]
    for bad in (np.inf, 1.5):
        with pytest.raises(InputError, match="outside"):
            parse_score(table(pd.Series([0.5, bad])), "score")


def test_labels_spelled_as_words_and_percentages_get_their_hint() -> None:
    """Issue 21: yes/no, true/false and positive/negative (any case) are labels 1/0, as the
    numbers are; scores in 0-100 are refused with the hint to divide by 100, not the
    sigmoid hint meant for logits."""
    from fairaudit.io.tables import Table, parse_binary, parse_score

    def table(values: list[str], name: str) -> Table:
        frame = pd.DataFrame({name: pd.Series(values, dtype=object)})
        return Table(path=Path("p.csv"), frame=frame, rows=pd.Series(range(2, len(frame) + 2)))

    words = ["Yes", "no", "TRUE", "false", "positive", "Negative", "1", "0.0", ""]
    got = parse_binary(table(words, "label"), "label", "label").tolist()
    assert got[:8] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0] and np.isnan(got[8])
    with pytest.raises(InputError, match="not a number") as bad:
        parse_binary(table(["yes", "maybe"], "label"), "label", "label")
    assert bad.value.row == 3
    with pytest.raises(InputError) as pct:
        parse_score(table(["12.5", "97", "0.3"], "score"), "score")
    assert "percentages" in str(pct.value.hint) and "sigmoid" not in str(pct.value.hint)
    with pytest.raises(InputError) as logits:
        parse_score(table(["-2.1", "3.4"], "score"), "score")
    assert "sigmoid" in str(logits.value.hint)


def test_id_column_per_file_joins_differently_named_keys(tmp_path: Path) -> None:
    """Issue 21, point 7: `--id-column predictions=img,demographics=sop_uid`: the same join as
    when both files call the key sop_instance_uid (the rows and reasons, by hand)."""
    preds = write(tmp_path / "p.csv", "img,label,score\nu1,0,0.1\nu2,1,0.9\nu3,0,0.2\n")
    demo = write(tmp_path / "d.csv", "sop_uid,sex\nu2,M\nu1,F\nu9,F\n")
    spec = spec_for(preds, demo, attributes=["sex"], id_column="predictions=img,demographics=sop_uid")
    cohort = build_cohort(spec, IdHasher(SALT))
    assert cohort.id_column == "img"
    assert cohort.attributes["sex"].tolist() == ["F", "M"] and cohort.labels.tolist() == [0, 1]
    assert row_of(cohort, "p.csv", 4)["reason"] == "no row in d.csv (demographics)"
    assert row_of(cohort, "d.csv", 4)["reason"] == "no prediction for this id"
    assert row_of(cohort, "d.csv", 2)["id"] == IdHasher(SALT)("u2")
    for bad, needle in (
        ("predictions=img,demographic=sop_uid", "ROLE one of predictions, demographics, labels, dicom"),
        ("predictions=img,demographics=nope", "nope"),
        ("predictions=img,labels=x", "no labels input"),
    ):
        with pytest.raises(InputError, match=re.escape(needle)):
            build_cohort(spec_for(preds, demo, attributes=["sex"], id_column=bad), IdHasher(SALT))
