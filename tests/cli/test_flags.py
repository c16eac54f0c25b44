"""Flags declared once (fairaudit/cli/_common.py), the rules about which go together checked in
one place (fairaudit.workflows.audit.check_audit), and library errors that name arguments by
their Python names, spelled as flags by the CLI (fairaudit.errors.arg, cli._common.FLAGS)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import typer

from fairaudit.cli._common import FLAGS, flag
from fairaudit.cli.main import app
from fairaudit.errors import InputError, arg, argument_spelling, cli_example

from _helpers.cli import flat, invoke, squash
from _helpers.paths import ROOT


def _commands() -> dict[str, Any]:
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


def _declared() -> dict[str, dict[str, Any]]:
    """Flag (or ARGUMENT) -> command -> its click parameter."""
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    for name, command in _commands().items():
        for param in command.params:
            key = param.opts[0] if param.param_type_name == "option" else param.name.upper()
            found[key][name] = param
    return found


SHARED = {key: by for key, by in _declared().items() if len(by) > 1}


def test_the_shared_flags_are_the_expected_ones() -> None:
    """A flag a second command starts to take belongs in cli/_common.py: this list says which."""
    assert set(SHARED) >= {
        "--out", "--demographics", "--attribute", "--task", "--model", "--labels", "--label-column",
        "--masks", "--mask-labels", "--id-column", "--bootstrap", "--ci-level", "--correction",
        "--min-group-size", "--seed", "--device", "--batch-size", "--workers", "--scheduler",
        "--format", "--keep-ids", "--salt", "--quiet", "--json", "--trust-model", "--follow-symlinks",
        "--max-pixels", "--max-file-size", "DICOM_DIR",
    }  # fmt: skip


@pytest.mark.parametrize("key", sorted(SHARED))
def test_a_shared_flag_has_one_help_text(key: str) -> None:
    """Declared once, so every command that takes it says the same about it."""
    params = SHARED[key]
    helps = {name: getattr(p, "help", None) for name, p in params.items()}
    assert len(set(helps.values())) == 1, helps
    spellings = {name: (tuple(p.opts), tuple(p.secondary_opts)) for name, p in params.items()}
    assert len(set(spellings.values())) == 1, spellings
    envvars = {name: getattr(p, "envvar", None) for name, p in params.items()}
    assert len({str(e) for e in envvars.values()}) == 1, envvars


def test_defaults_stay_each_commands_own() -> None:
    """One declaration, the command's default: --bootstrap is 2000 in audit, 1000 elsewhere."""
    declared = _declared()
    assert declared["--bootstrap"]["audit"].default == 2000
    assert declared["--bootstrap"]["normalize"].default == 1000
    assert declared["--out"]["audit"].default == Path("fairaudit_out")
    assert declared["--out"]["normalize"].required and declared["--out"]["report"].default is None
    assert declared["--attribute"]["augment-check"].required
    assert declared["--label-column"]["train"].default is None
    assert declared["--label-column"]["audit"].default == "label"


# ----------------------------------------------------------------------------- argument names
def test_an_input_error_names_its_argument_in_the_callers_words() -> None:
    def refuse() -> None:
        raise InputError(f"{arg('label_column')} is empty.", argument="label_column")

    with pytest.raises(InputError) as err:
        refuse()
    assert str(err.value) == "label_column= is empty." and err.value.argument == "label_column"
    with argument_spelling(flag), pytest.raises(InputError) as err:
        refuse()
    assert str(err.value) == "--label-column is empty."
    assert arg("label_column") == "label_column="  # the spelling is restored after the block


def test_the_mapping_table() -> None:
    assert flag("label_column") == "--label-column"
    assert flag("attributes") == "--attribute" and flag("intersections") == "--intersect"
    assert flag("formats") == "--format" and flag("dicom_dir") == "DICOM_DIR"
    assert set(FLAGS.values()) <= set(_declared())
    assert cli_example(" (fairaudit audit ...)") == ""
    with argument_spelling(flag):
        assert cli_example(" (fairaudit audit ...)") == " (fairaudit audit ...)"


def test_a_library_error_through_python_and_through_the_cli(tmp_path: Path) -> None:
    """The same InputError: `references=` raised in Python, `--reference` from the command."""
    from fairaudit.workflows.predictions import parse_references

    with pytest.raises(InputError, match=r"^references= 'sex': expected ATTR=GROUP") as err:
        parse_references(["sex"])
    assert err.value.argument == "references"
    res = invoke(
        ["audit", "--predictions", "p.csv", "--attribute", "sex", "--reference", "sex", "--out", tmp_path]
    )
    assert res.exit_code == 2
    assert "error: --reference 'sex': expected ATTR=GROUP, for example sex=F." in flat(res.output)
    assert arg("references") == "references="  # the command restored the spelling


def _library_arguments() -> set[str]:
    """Every argument name the library spells with arg() or sets as InputError.argument."""
    names: set[str] = set()
    pattern = re.compile(r"""(?:\barg\(|argument=|or_file=(?:None if \w+ else )?)["'](\w+)["']""")
    for path in (ROOT / "fairaudit").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "fairaudit").parts:
            continue
        names |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_argument_the_library_names_is_a_flag_of_some_command() -> None:
    """The mapping table is complete: each name renders as a flag a command really takes."""
    names = _library_arguments()
    assert {"label_column", "attributes", "masks", "out"} <= names
    flags = set(_declared()) | {o for c in _commands().values() for p in c.params for o in p.secondary_opts}
    missing = sorted(n for n in names if flag(n) not in flags)
    assert not missing, [(n, flag(n)) for n in missing]


def test_no_library_message_writes_a_flag() -> None:
    """Outside cli/, a `--flag` in a raised message or a hint comes from arg(); what is left is
    comments, docstrings and recorded data (manifest reasons, results.json fields), listed here."""
    recorded = {
        "no mask for this image in --masks", "beyond --max-images", "no --roi mask for this image",
        "--roi mask", "--target-spacing has", "--target-shape has", "--align-to template",
        "pass --target-shape with", 'spacing_source = "--spacing"', "(--masks) for this id",
        "(pass --spacing to give one)", "(pass --spacing with", "no --baseline-predictions given",
        "with --baseline-predictions", "pass --follow-symlinks to follow it", "--max-file-size)",
        "(or with --salt)", 'source="--bins"', 'parser.add_argument("--source"',
        "sample-data {folder} --n", "add `--overwrite`", "fairaudit audit --predictions",
        "--attribute sex --attribute race", "--predictions {folder}", "--demographics {folder}",
    }  # fmt: skip
    found = []
    for path in sorted((ROOT / "fairaudit").rglob("*.py")):
        if "cli" in path.relative_to(ROOT / "fairaudit").parts:
            continue
        in_doc = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            text = line.strip()
            quotes = text.count('"""')
            if in_doc or text.startswith("#") or quotes:
                in_doc = in_doc != (quotes % 2 == 1)
                continue
            code = text.split("  # ")[0]
            if re.search(r"""["'][^"']*--[a-z]""", code) and not any(r in code for r in recorded):
                found.append(f"{path.relative_to(ROOT)}:{number}: {text}")
    assert not found, "\n".join(found)


# ----------------------------------------------------------------------------- which flags go together
RULES = [
    (["--task", "foo", "--predictions", "p.csv"],
     "--task must be classification, segmentation or multiclass, not 'foo'."),
    ([], "nothing to audit: pass --predictions preds.csv, or DICOM_DIR with --model (bundled:NAME, "
         "a bundle folder, a TorchScript or ONNX file)."),
    (["DIR", "--model", "bundled:x", "--task", "segmentation", "--pred-masks", "pm"],
     "--model and --pred-masks exclude each other: the model makes the masks."),
    (["--predictions", "p.csv", "--resume"], "--resume and --cache-dir apply to a model run: add --model."),
    (["--predictions", "p.csv", "--cache-dir", "c"],
     "--resume and --cache-dir apply to a model run: add --model."),
    (["--masks", "m", "--pred-masks", "pm"],
     "--masks and --pred-masks belong to a segmentation audit: add --task segmentation."),
    (["--task", "segmentation", "--masks", "m", "--pred-masks", "pm", "--bins", "age=40"],
     "--bins age=...: a segmentation audit bins dicom: attributes only; put the binned column in the "
     "demographics CSV."),
    (["--task", "segmentation", "--masks", "m", "--pred-masks", "pm", "--attribute", "dicom:KVP"],
     "--attribute dicom:KVP: dicom: attributes are read from the DICOM headers; pass the DICOM folder as "
     "DICOM_DIR"),
    (["--task", "segmentation", "--masks", "m", "--pred-masks", "pm", "--bins", "dicom:KVP=60"],
     "--bins dicom:KVP=...: dicom:KVP is not among the audited attributes."),
    (["--task", "segmentation", "--masks", "m", "--pred-masks", "pm", "--baseline-predictions", "b.csv"],
     "--baseline-predictions is available for classification audits only."),
    (["--model", "bundled:x"],
     "--model runs on a DICOM folder: pass DICOM_DIR (fairaudit audit DICOM_DIR --model ...)."),
    (["DIR", "--model", "bundled:x", "--predictions", "p.csv"],
     "--model and --predictions exclude each other: audit a model run or a predictions CSV."),
    (["DIR", "--model", "bundled:x", "--unit", "series"],
     "--unit series is not supported with --model (the models take one image each)."),
    (["DIR", "--model", "bundled:x", "--task", "segmentation"],
     "a segmentation audit of a model needs the ground truth: pass --masks MASK_DIR (<id>.png or "
     "<id>.npy label images)."),
    (["--task", "segmentation", "--masks", "m"],
     "a segmentation audit needs --masks (ground truth) and --pred-masks (predictions, or --model). "
     "Both are folders of <id>.png or <id>.npy files."),
    (["--task", "segmentation", "--masks", "m", "--pred-masks", "pm", "--predictions", "p.csv"],
     "--predictions is for classification; a segmentation audit reads --pred-masks."),
    (["--task", "segmentation", "--masks", "m", "--pred-masks", "pm", "--threshold-policy", "youden"],
     "--threshold-policy and --calibration-set apply to classification audits only."),
    (["--task", "segmentation", "--masks", "m", "--pred-masks", "pm", "--unit", "series"],
     "--unit series is not supported for segmentation audits (one mask per image)."),
    (["--predictions", "p.csv", "--calibration-set", "c.csv"],
     "--calibration-set needs --threshold-policy (youden, f1, sensitivity=X, ...)."),
    (["--predictions", "p.csv", "--bootstrap", "0"],
     "--bootstrap must be at least 1, got 0. The default is 2000."),
    (["--predictions", "p.csv", "--permutations", "0"],
     "--permutations must be at least 1, got 0. Leave it out to use the --bootstrap count."),
    (["--predictions", "p.csv", "--primary-metrics", "auroc,nope"], "--primary-metrics: unknown metric(s) nope;"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), RULES, ids=[" ".join(a) or "nothing" for a, _ in RULES])
def test_each_rule_exits_2_with_its_message(tmp_path: Path, args: list[str], message: str) -> None:
    """Checked before any file is read (none of these files exists) or model loaded."""
    res = invoke(["audit", *args, "--out", tmp_path / "out"])
    assert res.exit_code == 2, res.output
    assert f"error: {message}" in flat(res.output), res.output
    assert not (tmp_path / "out").exists()


def test_out_inside_an_input_folder_is_refused_before_the_work(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    res = invoke(["audit", images, "--predictions", "p.csv", "--attribute", "sex", "--out", images / "out"])
    assert res.exit_code == 2
    assert f"--out {images / 'out'} is inside the input folder DICOM_DIR {images}" in flat(res.output)


def test_the_rules_in_python_name_arguments() -> None:
    """The library's check (what the Python API meets): argument names, `argument` set."""
    from fairaudit.workflows.audit import check_audit
    from fairaudit.workflows.predictions import AuditRequest

    req = AuditRequest(
        predictions=Path("p.csv"), attributes=["sex"], out=Path("o"), calibration_set=Path("c")
    )
    with pytest.raises(InputError) as err:
        check_audit(req)
    assert str(err.value) == "calibration_set= needs threshold_policy= (youden, f1, sensitivity=X, ...)."
    assert err.value.argument == "calibration_set"
    with pytest.raises(InputError) as err:
        check_audit(AuditRequest(predictions=None, attributes=[], out=Path("o")), model="bundled:x")
    assert str(err.value) == "model= runs on a DICOM folder: pass dicom_dir=."
    assert err.value.argument == "dicom_dir"


def _library_errors() -> list[tuple[list[str], str]]:
    """Commands whose bad argument is refused by the library (tests of those functions assert
    the Python spelling), with the message each shows here, in flags."""
    from _helpers.paths import SAMPLE

    images, demo = str(SAMPLE / "images"), str(SAMPLE / "demographics.csv")
    preds = ["--predictions", str(SAMPLE / "predictions.csv"), "--demographics", demo]
    check = ["augment-check", images, "--demographics", demo, "--attribute", "sex"]
    return [
        ([*check, "--modality", "foo"], "--modality 'foo': choose one of xray, ct, mri, ultrasound."),
        ([*check, "--modality", "xray", "--strength", "foo"], "--strength 'foo': choose one of mild,"),
        (["normalize", images, "--method", "foo"], "--method 'foo': choose one of adaptive_histogram,"),
        (["normalize", images, "--method", "zscore", "--clip-limit", "0"], "--clip-limit must be in (0, 1]"),
        (["normalize", images, "--method", "zscore", "--target-shape", "0x1"],
         "--target-shape '0x1': expected 2 or 3 positive numbers."),
        (["audit", *preds, "--attribute", "dicom:KVP", "--bins", "bad"], "--bins 'bad': expected COLUMN=EDGE"),
        (["audit", "--task", "segmentation", "--masks", "m", "--pred-masks", "pm", "--spacing", "bad"],
         "--spacing 'bad': expected two (rows x columns)"),
        (["audit", *preds, "--attribute", "sex", "--discover", "--discover-metric", "foo", "--bootstrap", "20"],
         "--discover-metric must be one of auroc,"),
        (["train", images, "--demographics", demo, "--depth", "3"], "--depth applies to --architecture unet only."),
        (["sample-data", "cohort", "--seed", "-1"], "--seed must be a non-negative integer, got -1."),
        (["report", "results.json", "--format", "foo"], "--format: unknown format(s) foo; choose from html,"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"), _library_errors(), ids=lambda v: v if isinstance(v, str) else v[0]
)
def test_library_errors_show_flags_through_the_cli(tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path / "cohort") if a == "cohort" else a for a in args]
    extra = [] if args[0] in ("sample-data", "report") else ["--out", tmp_path / "out"]
    res = invoke([*args, *extra, "-q"], columns=400)
    assert res.exit_code == 2, res.output
    assert f"error: {message}" in flat(res.output), res.output


@pytest.mark.parametrize(
    "argv",
    [
        ["--label-column", "label", "--label-column", "finding"],
        ["--label-column=label", "--label-column", "finding"],
        ["--bootstrap", "50", "--bootstrap=60"],
    ],
)
def test_a_single_valued_option_given_twice_is_a_usage_error(argv: list[str], tmp_path) -> None:
    """Issue 21: the second --label-column used to replace the first silently."""
    from _helpers.paths import SAMPLE

    res = invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                      str(SAMPLE / "demographics.csv"), "--attribute", "sex", *argv, "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 2, res.output
    name = argv[0].split("=")[0]
    assert squash(f"{name} is given more than once") in squash(res.output)


def test_repeatable_options_and_values_that_look_like_options_are_not_counted(tmp_path) -> None:
    """--attribute repeats by design; a value equal to an option name is a value."""
    from _helpers.paths import SAMPLE

    res = invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                      str(SAMPLE / "demographics.csv"), "--attribute", "sex", "--attribute", "race",
                      "--bootstrap", "50", "--quiet", "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code in (0, 1), res.output
