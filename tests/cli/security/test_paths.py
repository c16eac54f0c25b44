"""Issue 19, points 10 and 11: files outside what the user named, and the prediction cache.

Each test builds the hostile layout itself (an --out inside the image folder, a planted
symbolic link in .fairaudit-cache or in the DICOM folder, a bundle whose weights.file
leaves it, a tampered cache) and checks the exit code, the message, the files written
and that nothing outside the test's temporary folders was written or read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from fairaudit.errors import InputError

from _helpers import cli

N = 12
MODEL = "bundled:cxr_finding_classifier"


@pytest.fixture(scope="module")
def cohort(make_cohort) -> Path:
    return make_cohort(n=N, size=32, seed=3)


def _invoke(args: list[str]):
    return cli.invoke(args, columns=300)


def _model_audit(cohort: Path, images: Path, out: Path, *extra: str):
    return cli.audit(
        *cli.model_run_args(cohort, MODEL, images), "--attribute", "sex", "--min-group-size", "2", "--device", "cpu",
        "--salt", "s", *extra, bootstrap=20, workers=1, quiet=True, out=out, columns=300,
    )  # fmt: skip


def _copy_images(cohort: Path, dest: Path) -> Path:
    shutil.copytree(cohort / "images", dest)
    return dest


def _scores(path: Path) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["id"]: float(r["score"]) for r in csv.DictReader(fh)}


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- --out placement


def test_out_inside_the_dicom_folder_is_refused_before_any_work(cohort: Path, tmp_path: Path) -> None:
    images = _copy_images(cohort, tmp_path / "images")
    planted = images / "predictions.csv"
    planted.write_text("an input file, not fairaudit's\n")
    before = sorted(p.relative_to(images) for p in images.rglob("*"))
    res = _model_audit(cohort, images, images)
    assert res.exit_code == 2, res.output
    message = cli.flat(res.output)
    assert "--out" in message and "DICOM_DIR" in message and "inside the input folder" in message
    assert "Traceback" not in res.output
    assert planted.read_text() == "an input file, not fairaudit's\n"
    # A folder below it, too; nothing is created (checked before any work).
    res = _model_audit(cohort, images, images / "sub" / "out")
    assert res.exit_code == 2 and "inside the input folder" in cli.flat(res.output)
    assert sorted(p.relative_to(images) for p in images.rglob("*")) == before


def test_cache_dir_inside_the_dicom_folder_is_refused(cohort: Path, tmp_path: Path) -> None:
    images = _copy_images(cohort, tmp_path / "images")
    res = _model_audit(cohort, images, tmp_path / "out", "--cache-dir", str(images / "cache"))
    assert res.exit_code == 2, res.output
    assert "--cache-dir" in cli.flat(res.output) and "inside the input folder" in cli.flat(res.output)
    assert not (images / "cache").exists() and not (tmp_path / "out").exists()


def test_an_input_file_in_out_under_an_output_name_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    preds = tmp_path / "p.csv"
    preds.write_text("id,label,score\na,1,0.9\nb,0,0.2\n")
    demo = out / "manifest.csv"  # would be overwritten by the audit's manifest.csv
    demo.write_text("id,sex\na,F\nb,M\n")
    res = cli.audit("--predictions", str(preds), "--demographics", str(demo), "--attribute", "sex",
                    quiet=True, out=out, columns=300)  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "--demographics" in cli.flat(res.output) and "overwritten" in cli.flat(res.output)
    assert demo.read_text() == "id,sex\na,F\nb,M\n"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv"]


@pytest.mark.parametrize("command", ["train", "augment-check"])
def test_other_commands_refuse_an_out_inside_the_dicom_folder(
    cohort: Path, tmp_path: Path, command: str
) -> None:
    images = _copy_images(cohort, tmp_path / "images")
    before = sorted(p.relative_to(images) for p in images.rglob("*"))
    args = [command, str(images), "--demographics", str(cohort / "demographics.csv"), "--attribute", "sex"]
    args += ["--modality", "xray"] if command == "augment-check" else []
    res = _invoke([*args, "--out", str(images / "o"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "inside the input folder" in cli.flat(res.output) and "DICOM_DIR" in cli.flat(res.output)
    assert sorted(p.relative_to(images) for p in images.rglob("*")) == before


def test_a_planted_link_at_an_output_name_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "results.json")
    preds = tmp_path / "p.csv"
    preds.write_text(
        "id,label,score,sex\n" + "".join(f"i{k},{k % 2},0.{k},{'FM'[k % 2]}\n" for k in range(1, 9))
    )
    res = cli.audit("--predictions", str(preds), "--attribute", "sex", "--min-group-size", "2",
                    bootstrap=20, quiet=True, out=out, columns=300)  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    assert outside.read_text() == "keep me\n"
    assert not (out / "results.json").is_symlink()
    json.loads((out / "results.json").read_text())


def test_follow_symlinks_is_in_the_help() -> None:
    res = _invoke(["audit", "--help"])
    assert res.exit_code == 0 and "--follow-symlinks" in res.output


# --------------------------------------------------------------------------- the cache folder


def test_a_planted_link_at_the_cache_file_is_refused(cohort: Path, tmp_path: Path) -> None:
    from fairaudit.models.loading import load_predictor
    from fairaudit.models.pred_cache import CACHE_DIR, model_key

    key = model_key(load_predictor(MODEL, "cpu").describe())
    victim = tmp_path / "victim.txt"
    victim.write_text("outside --out\n")
    out = tmp_path / "out"
    (out / CACHE_DIR).mkdir(parents=True)
    os.symlink(victim, out / CACHE_DIR / f"{key}.scores")
    res = _model_audit(cohort, cohort / "images", out)
    assert res.exit_code == 2, res.output
    assert "symbolic link" in cli.flat(res.output) and f"{key}.scores" in cli.flat(res.output)
    assert victim.read_text() == "outside --out\n"
    assert not (out / "results.json").exists()


def test_a_planted_link_as_the_cache_folder_is_refused(cohort: Path, tmp_path: Path) -> None:
    from fairaudit.models.pred_cache import CACHE_DIR

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / CACHE_DIR)
    res = _model_audit(cohort, cohort / "images", out)
    assert res.exit_code == 2, res.output
    assert "symbolic link" in cli.flat(res.output) and CACHE_DIR in cli.flat(res.output)
    assert list(elsewhere.iterdir()) == []


def test_a_link_planted_after_the_check_is_not_written_through(tmp_path: Path, monkeypatch) -> None:
    """O_NOFOLLOW on the append: a link that appears between the check and the open fails."""
    from fairaudit.models.pred_cache import PredictionCache

    info = {"name": "m", "sha256": "ab" * 32, "task": "classification", "device": "cpu"}
    cache = PredictionCache(tmp_path / "cache", info, own_folder=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("x\n")
    (tmp_path / "cache").mkdir()
    os.symlink(victim, cache.path)
    with pytest.raises(InputError, match="symbolic link"):
        cache.add([("1" * 64, 0.5)])
    assert victim.read_text() == "x\n"
    # A link that appears after the lstat check (a race) fails the O_NOFOLLOW open.
    import fairaudit._util.safe_paths as safe

    def plant(path: Path) -> bool:
        if Path(path).name.endswith(".scores") and not os.path.lexists(path):
            os.symlink(victim, path)
        return False

    monkeypatch.setattr(safe, "regular_or_missing", plant)
    with pytest.raises(InputError, match="cannot open the prediction cache"):
        PredictionCache(tmp_path / "cache2", info).add([("1" * 64, 0.5)])
    assert victim.read_text() == "x\n"


# --------------------------------------------------------------------------- the cache's check


def test_cache_lines_that_fail_their_check_are_predicted_again(tmp_path: Path, caplog) -> None:
    from fairaudit.models.pred_cache import PredictionCache, line_check

    info = {"name": "m", "sha256": "ab" * 32, "task": "classification", "device": "cpu"}
    cache = PredictionCache(tmp_path, info)
    a, b, c, d, e = (str(i) * 64 for i in range(1, 6))
    cache.add([(a, 0.25), (b, 0.5), (c, 0.75)])
    cache.close()
    lines = cache.path.read_text().splitlines()
    lines[1] = lines[1].replace("0.5", "nan")  # NaN, old check: fails the check
    lines.append(f"{d} 1.5 {line_check(cache.key, d, '1.5')}")  # check right, not a probability
    lines.append(f"{e} 0.5")  # the format without a check
    cache.path.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING"):
        assert cache.load() == {a: 0.25, c: 0.75}
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(cache.path) in warning and "3 line(s) failed their check" in warning
    # Lines of another model's cache fail too (the check covers the key).
    other = PredictionCache(tmp_path, {**info, "sha256": "cd" * 32})
    other.path.write_text(cache.path.read_text())
    assert other.load() == {}


def test_a_crash_cut_line_is_dropped_silently_on_the_next_append(tmp_path: Path, caplog) -> None:
    from fairaudit.models.pred_cache import PredictionCache

    info = {"name": "m", "sha256": "ab" * 32, "task": "classification", "device": "cpu"}
    cache = PredictionCache(tmp_path, info)
    cache.add([("1" * 64, 0.25)])
    cache.close()
    with open(cache.path, "a") as fh:
        fh.write("2" * 64 + " 0.3")  # a crash in the middle of a line
    cache.add([("3" * 64, 0.5)])
    cache.close()
    with caplog.at_level("WARNING"):
        assert cache.load() == {"1" * 64: 0.25, "3" * 64: 0.5}
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_tampered_cache_is_recomputed_with_a_warning_naming_the_cache(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _model_audit(cohort, cohort / "images", out)
    assert first.exit_code in (0, 1), first.output
    expected = _scores(out / "predictions.csv")
    (scores,) = (out / ".fairaudit-cache").glob("*.scores")
    lines = scores.read_text().splitlines()
    assert len(lines) == N
    digest, _, check = lines[0].split()
    lines[0] = f"{digest} nan {check}"  # a NaN written into the cache
    digest, _, check = lines[1].split()
    lines[1] = f"{digest} 7.0 {check}"  # out of range
    scores.write_text("\n".join(lines) + "\n")
    res = _model_audit(cohort, cohort / "images", out, "--resume")
    assert res.exit_code == first.exit_code, res.output
    message = cli.flat(res.output)
    assert "prediction cache" in message and ".fairaudit-cache" in message and "failed their check" in message
    assert "predictions.csv" not in message
    run = json.loads((out / "results.json").read_text())["model"]["run"]
    assert run["n_predicted"] == N and run["from_cache"] == N - 2 and run["n_unreadable"] == 0
    # The same scores (recomputed in a smaller batch: equal up to float rounding).
    got = _scores(out / "predictions.csv")
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(v, abs=1e-6) for k, v in expected.items())
    # The failing lines were dropped and the recomputed scores appended with a valid check:
    # a third run takes all from the cache, without a warning.
    res = _model_audit(cohort, cohort / "images", out, "--resume")
    assert json.loads((out / "results.json").read_text())["model"]["run"]["from_cache"] == N
    assert "failed their check" not in cli.flat(res.output)


# --------------------------------------------------------------------------- bundles


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    from fairaudit.models import save_bundle
    from fairaudit.models.architectures import build_model

    meta = {
        "name": "t",
        "task": "classification",
        "architecture": {"name": "small_cnn", "kwargs": {"width": 4}},
    }
    return save_bundle(build_model("small_cnn", width=4), tmp_path / "deep" / "er" / "b", meta)


def _set_weights_file(bundle: Path, name: str) -> None:
    meta_path = bundle / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["weights"]["file"] = name
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["traversal", "absolute", "link"])
def test_a_bundle_naming_a_file_outside_it_is_refused(
    bundle: Path, tmp_path: Path, monkeypatch, how: str
) -> None:
    import fairaudit.models.bundle as bundle_mod

    outside = tmp_path / "x.safetensors"
    shutil.copy(bundle / "model.safetensors", outside)  # the same bytes: it would load
    name = {"traversal": "../../../x.safetensors", "absolute": str(outside), "link": "inner.safetensors"}[how]
    if how == "link":
        os.symlink(outside, bundle / name)
    _set_weights_file(bundle, name)
    hashed: list[Path] = []
    monkeypatch.setattr(bundle_mod, "sha256_file", lambda p: hashed.append(p) or "0" * 64)
    with pytest.raises(InputError) as info:
        bundle_mod.load_bundle(bundle)
    assert "weights.file" in str(info.value) and "outside the bundle folder" in str(info.value)
    assert hashed == []  # never read


def test_etc_passwd_as_weights_gets_exit_2_and_no_hash(bundle: Path, cohort: Path, tmp_path: Path) -> None:
    _set_weights_file(bundle, "/etc/passwd")
    res = _invoke(["audit", *cli.model_run_args(cohort, bundle), "--attribute", "sex", "--device", "cpu",
                   "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "weights.file" in cli.flat(res.output)
    if Path("/etc/passwd").is_file():
        assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() not in res.output


def test_a_weights_file_inside_the_bundle_still_loads(bundle: Path) -> None:
    from fairaudit.models.bundle import load_bundle

    (bundle / "w").mkdir()
    shutil.move(bundle / "model.safetensors", bundle / "w" / "model.safetensors")
    _set_weights_file(bundle, "w/model.safetensors")
    assert load_bundle(bundle).sha256


# --------------------------------------------------------------------------- links in the DICOM folder


def test_links_out_of_the_dicom_folder_are_skipped_and_listed(cohort: Path, tmp_path: Path) -> None:
    from fairaudit.io.dicom._scan import OUTSIDE_LINK_REASON

    images = _copy_images(cohort, tmp_path / "images")
    secret = tmp_path / "DOE_JANE_MRN4455667"  # a target whose name must never be printed
    secret.mkdir()
    files = sorted(p for p in images.rglob("*") if p.is_file())
    shutil.copy(files[0], secret / "one.dcm")
    shutil.copy(files[1], secret / "two.dcm")
    os.symlink(secret, images / "zz_outside_dir")
    os.symlink(secret / "one.dcm", images / "zz_outside_file")
    os.symlink(files[2], images / "zz_inside_file")  # inside: its target is read anyway
    if Path("/etc").is_dir():
        os.symlink("/etc", images / "zz_etc")
    out = tmp_path / "out"
    res = _model_audit(cohort, images, out)
    assert res.exit_code in (0, 1), res.output
    rows = _manifest(out)
    skipped = [r for r in rows if r["reason"].endswith(OUTSIDE_LINK_REASON)]
    assert len(skipped) == (3 if Path("/etc").is_dir() else 2)
    text = (out / "manifest.csv").read_text() + res.output + (out / "results.json").read_text()
    assert "DOE_JANE" not in text and "/etc/" not in text and "passwd" not in text
    assert json.loads((out / "results.json").read_text())["model"]["run"]["n_predicted"] == N


def test_follow_symlinks_reads_an_outside_folder(cohort: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    elsewhere = _copy_images(cohort, tmp_path / "elsewhere")
    os.symlink(elsewhere, images / "all")
    res = _model_audit(cohort, images, tmp_path / "out")
    assert res.exit_code == 2, res.output  # nothing to predict: the only entry was skipped
    assert "symbolic link leaving the folder" in cli.flat(res.output)
    assert "elsewhere" not in res.output
    res = _model_audit(cohort, images, tmp_path / "out2", "--follow-symlinks")
    assert res.exit_code in (0, 1), res.output
    assert json.loads((tmp_path / "out2" / "results.json").read_text())["model"]["run"]["n_predicted"] == N


# --------------------------------------------------------------------------- links in the mask folders


def _link_a_mask_out(folder: Path, outside: Path, index: int) -> None:
    """Move the `index`-th mask of `folder` to `outside`, and leave a link to it in its place."""
    mask = sorted(folder.glob("*.png"))[index]
    outside.mkdir(exist_ok=True)
    os.replace(mask, outside / mask.name)
    os.symlink(outside / mask.name, mask)


def _segmentation_audit(cohort: Path, masks: Path, pred: Path, out: Path, *extra: str):
    return cli.audit(
        "--task", "segmentation", "--masks", str(masks), "--pred-masks", str(pred), "--demographics",
        str(cohort / "demographics.csv"), "--attribute", "sex", "--min-group-size", "2", "--salt", "s",
        *extra, bootstrap=20, workers=1, quiet=True, out=out, columns=300,
    )  # fmt: skip


def test_links_out_of_the_mask_folders_are_skipped_and_listed(cohort: Path, tmp_path: Path) -> None:
    """Issue 19 leftover: --masks and --pred-masks are walked as DICOM_DIR is: a link leaving
    the folder is not followed, and is listed in manifest.csv with the DICOM scan's reason;
    --follow-symlinks reads it. A link to a mask inside the folder still names another id."""
    from fairaudit.io.dicom._scan import OUTSIDE_LINK_REASON
    from fairaudit.io.masks import index_masks

    masks, pred = tmp_path / "masks", tmp_path / "pred"
    shutil.copytree(cohort / "masks", masks)
    shutil.copytree(cohort / "masks", pred)
    secret = tmp_path / "DOE_JANE_MRN4455667"  # a target whose name must never be printed
    _link_a_mask_out(masks, secret, 0)
    _link_a_mask_out(pred, secret / "pred", 1)  # another id: two cases lose a mask
    os.symlink(sorted(pred.glob("*.png"))[2].name, pred / "alias.png")  # inside the folder
    assert set(index_masks(pred).files) >= {"alias", sorted(pred.glob("*.png"))[2].stem}

    out = tmp_path / "out"
    res = _segmentation_audit(cohort, masks, pred, out)
    assert res.exit_code in (0, 1), res.output
    rows = _manifest(out)
    skipped = [r for r in rows if r["reason"] == f"skipped: {OUTSIDE_LINK_REASON}"]
    assert sorted(r["source"].split("/")[0] for r in skipped) == ["masks", "pred_masks"]
    assert all(r["status"] == "excluded" for r in skipped)
    reasons = {r["reason"] for r in rows if r["status"] == "excluded"}
    assert (
        "no ground-truth mask (--masks) for this id" in reasons and "no predicted mask for this id" in reasons
    )
    text = (out / "manifest.csv").read_text() + res.output + (out / "results.json").read_text()
    assert "DOE_JANE" not in text
    assert json.loads((out / "results.json").read_text())["inputs"]["n_included"] == N - 2
    # --follow-symlinks: both linked masks are read, nothing is skipped.
    res = _segmentation_audit(cohort, masks, pred, tmp_path / "out2", "--follow-symlinks")
    assert res.exit_code in (0, 1), res.output
    assert not [r for r in _manifest(tmp_path / "out2") if OUTSIDE_LINK_REASON in r["reason"]]
    assert json.loads((tmp_path / "out2" / "results.json").read_text())["inputs"]["n_included"] == N
