"""Issue 19, points 5 (the output folder) and 6 (one set of outputs per run).

Each test builds the hostile or careless case itself: a run killed with SIGKILL at chosen
moments of writing its files (the FAIRAUDIT_TEST_KILL_AT_STEP hook of
fairaudit._util.atomic picks the moment; or a kill while the audit computes), a reused --out,
an --out that is a file or cannot be created, a read-only --out, a full disk (ENOSPC
simulated), and rich markup in the folder's name. Every case checks the exit code, the
message and the files left in --out: never files of two runs side by side, never a
results.json without its companions, no leftovers of killed runs after the next run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fairaudit._util.atomic import ANCHORS, SET_FILES, SET_FOLDERS, STAGING_PREFIX

from _helpers import cli

PASS_GATE = '[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.9\n'
FAIL_GATE = '[gate]\nmetrics = ["tpr"]\nmax_abs_difference = 0.0001\n'  # inconclusive: exit 1
AUDIT_SET = {"results.json", "model_card.json", "report.html", "report.md", "junit.xml", "manifest.csv"}
_STAMP = re.compile(rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?(\.\d+)?Z?")
DEAD_PID = 4_194_304 + 4321  # above Linux's largest pid_max: never a live process


def _env(**extra: str) -> dict[str, str | None]:
    """Changes to the child's environment: one thread, wide lines, no test hook unless asked."""
    hooks = {"FAIRAUDIT_TEST_KILL_AT_STEP": None, "FAIRAUDIT_TEST_INTERRUPT_AFTER": None}
    return {"OMP_NUM_THREADS": "1", "COLUMNS": "300", **hooks, **extra}


def _audit_args(out: Path, gate: Path) -> list[str]:
    return [
        "audit", *cli.sample_predictions_args("sex"), "--bootstrap", "20", "--workers", "1", "--salt", "s", "--quiet",
        "--gate", str(gate), "--format", "html,md,json,junit", "--out", str(out),
    ]  # fmt: skip


def _run(args: list[str], kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = _env() if kill_at is None else _env(FAIRAUDIT_TEST_KILL_AT_STEP=str(kill_at))
    return cli.run_module(args, env=env, timeout=600, cwd=None)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of the set in `folder` (files of a family folder as 'folder/name'), with
    timestamps blanked: two runs of one command differ only there."""
    out: dict[str, bytes] = {}
    for name in SET_FILES:
        if (folder / name).is_file():
            out[name] = _STAMP.sub(b"<time>", (folder / name).read_bytes())
    for name in SET_FOLDERS:
        if (folder / name).is_dir():
            out[name + "/"] = b""
            for p in (folder / name).iterdir():
                out[f"{name}/{p.name}"] = p.read_bytes()
    return out


def _origin(state: dict[str, bytes], refs: dict[str, dict[str, bytes]]) -> set[str]:
    """Which reference runs the files of `state` can come from; fails on a file of neither."""
    origins = set(refs)
    for name, data in state.items():
        could = {r for r, ref in refs.items() if ref.get(name) == data}
        assert could, f"{name} matches no run"
        origins &= could
    return origins


def _assert_one_set(out: Path, refs: dict[str, dict[str, bytes]]) -> str | None:
    """The files in `out` come from one run; with results.json, that run's whole set."""
    state = _snapshot(out)
    origins = _origin(state, refs)
    assert origins, f"files of two runs side by side: {sorted(state)}"
    anchor = [n for n in ANCHORS if n in state]
    if anchor:
        (run,) = [r for r in origins if refs[r].keys() == state.keys()] or [None]
        assert run is not None, f"{anchor[0]} without its companions: {sorted(state)}"
        return run
    return None


def _leftovers(out: Path) -> list[str]:
    return sorted(
        p.name for p in out.iterdir() if p.name.startswith(STAGING_PREFIX) or p.name.endswith(".tmp")
    )


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gates")
    (root / "pass.toml").write_text(PASS_GATE, encoding="utf-8")
    (root / "fail.toml").write_text(FAIL_GATE, encoding="utf-8")
    return root / "pass.toml", root / "fail.toml"


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory, gates) -> tuple[Path, dict[str, dict[str, bytes]]]:
    """Clean runs A (gate passes) and B (gate inconclusive, exit 1), made in the same --out
    the killed runs use (the recorded command names it)."""
    out = tmp_path_factory.mktemp("reused") / "out"
    refs = {}
    for name, gate, code in (("A", gates[0], 0), ("B", gates[1], 1)):
        res = _run(_audit_args(out, gate))
        assert res.returncode == code, res.stderr
        assert sorted(p.name for p in out.iterdir()) == sorted(AUDIT_SET)
        refs[name] = _snapshot(out)
        shutil.rmtree(out)
    assert refs["A"]["report.md"] != refs["B"]["report.md"]
    assert b"Gate passed" in refs["A"]["report.md"] and b"Gate passed" not in refs["B"]["report.md"]
    return out, refs


def _first_run(out: Path, refs_dir: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(refs_dir, out)


# Steps of the second run's publish (6 files of the first run moved away, results.json
# first; then 6 new ones moved in, results.json last): all staged, the old set half gone
# (results.json first), none of either set, all but results.json, all in.
# Step 6 (mid-publish: old set moved aside, new set not yet in) runs in `make test`; the other
# steps are the same code path at other moments and run with `pytest -m slow`.
@pytest.mark.parametrize(
    "step", [pytest.param(k, marks=pytest.mark.slow) if k != 6 else k for k in (0, 3, 6, 11, 12)]
)
def test_kill_9_while_publishing_a_reused_out_never_mixes_two_runs(references, gates, step: int) -> None:
    out, refs = references
    first = out.parent / "first"
    if not first.exists():
        assert _run(_audit_args(out, gates[0])).returncode == 0
        out.rename(first)
    _first_run(out, first)
    assert _assert_one_set(out, refs) == "A"

    killed = _run(_audit_args(out, gates[1]), kill_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = _assert_one_set(out, refs)
    assert run == ("A" if step == 0 else "B" if step == 12 else None)
    assert _leftovers(out), "the killed run's staging folder is what the next run removes"

    again = _run(_audit_args(out, gates[1]))
    assert again.returncode == 1, again.stderr
    assert _assert_one_set(out, refs) == "B"
    assert _leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(AUDIT_SET)


def test_kill_9_during_the_audit_leaves_the_previous_set_whole(references, gates, tmp_path: Path) -> None:
    """Killed while it computes (its staging folder exists): --out holds the first run's set,
    untouched; the next run removes the orphan and planted leftovers of dead processes,
    and keeps a live process's staging folder."""
    out, refs = references
    first = tmp_path / "first"
    assert _run(_audit_args(first, gates[0])).returncode == 0
    before = _snapshot(first)
    with subprocess.Popen(
        [*cli.FAIRAUDIT, *_audit_args(first, gates[1])],
        env=cli.child_env(_env()),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(STAGING_PREFIX) for p in first.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "no staging folder appeared"
            time.sleep(0.01)
        proc.kill()
        proc.wait()
    assert _snapshot(first) == before
    assert len(_leftovers(first)) == 1
    # leftovers of older killed runs (the names fairaudit's writers use), and a live run's
    (first / f".report.html.{DEAD_PID}.deadbeef.tmp").write_text("half")
    (first / f".manifest.{DEAD_PID}.0badf00d.tmp.csv").write_text("half")
    (first / f".augment_records.{DEAD_PID}.tmp").write_text("half")
    dead = first / f"{STAGING_PREFIX}.{DEAD_PID}.12345678"
    (dead / "pred_masks").mkdir(parents=True)
    (dead / "results.json").write_text("{}")
    live = first / f"{STAGING_PREFIX}.{os.getpid()}.87654321"
    live.mkdir()
    res = _run(_audit_args(first, gates[1]))
    assert res.returncode == 1, res.stderr
    assert _leftovers(first) == [live.name]
    state = _snapshot(first)
    assert state.keys() == refs["B"].keys() and b"Gate passed" not in state["report.md"]


def test_reused_out_drops_the_first_runs_extra_formats(gates, tmp_path: Path) -> None:
    """A second run writing fewer formats: the first run's junit.xml and report.md (which
    said "Gate passed") are removed, not left beside a results.json saying otherwise."""
    out = tmp_path / "out"
    assert _run(_audit_args(out, gates[0])).returncode == 0
    args = _audit_args(out, gates[1])
    args[args.index("html,md,json,junit")] = "json"
    assert _run(args).returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv", "model_card.json", "results.json"]
    assert json.loads((out / "results.json").read_text())["gate"]["passed"] is False


def test_a_user_file_in_out_is_kept(gates, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "images").mkdir()
    (out / "images" / "scan.dcm").write_bytes(b"mine")
    assert _run(_audit_args(out, gates[0])).returncode == 0
    assert _run(_audit_args(out, gates[1])).returncode == 1
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "images" / "scan.dcm").read_bytes() == b"mine"


# ----------------------------------------------------------------------------- --out itself


def _invoke(args: list[str]):
    return cli.invoke(args, columns=400)


def _cli(out: Path, *extra: str):
    return cli.audit(*cli.sample_predictions_args("sex"), "--format", "html,md,json,junit", *extra,
                     bootstrap=20, workers=1, out=out, columns=400)  # fmt: skip


@pytest.fixture
def no_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the statistics start: --out must be refused before the work."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the audit ran before --out was checked")

    monkeypatch.setattr("fairaudit.stats.run_audit", refuse)


def test_out_that_is_a_file_is_refused_first(tmp_path: Path, no_audit) -> None:
    target = tmp_path / "[bold]report"
    target.write_text("keep me")
    res = _cli(target)
    assert res.exit_code == 2, res.output
    assert f"{target}: --out names an existing file, not a folder" in cli.flat(res.output)
    assert "Traceback" not in res.output
    assert target.read_text() == "keep me"


def test_out_that_cannot_be_created(tmp_path: Path, no_audit) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "out"
    res = _cli(target)
    assert res.exit_code == 2, res.output
    assert f"{target}: the output folder cannot be created" in cli.flat(res.output)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod cannot make a folder read-only for this process",
)
def test_read_only_out_is_refused_first(tmp_path: Path, no_audit) -> None:
    target = tmp_path / "ro"
    target.mkdir()
    (target / "results.json").write_text("{}")
    target.chmod(0o555)
    try:
        res = _cli(target)
    finally:
        target.chmod(0o755)
    assert res.exit_code == 2, res.output
    assert f"{target}: the output folder is not writable" in cli.flat(res.output)
    assert sorted(p.name for p in target.iterdir()) == ["results.json"]


def test_read_only_out_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_audit) -> None:
    """The same refusal where chmod cannot make it (root): creating the staging folder fails
    with EACCES, as it does in a read-only folder."""
    import fairaudit._util.atomic as atomic

    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.name.startswith(STAGING_PREFIX):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(atomic.Path, "mkdir", mkdir)
    target = tmp_path / "ro"
    res = _cli(target)
    assert res.exit_code == 2, res.output
    assert f"{target}: the output folder is not writable (Permission denied)" in cli.flat(res.output)


def test_full_disk_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_audit) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "out"
    res = _cli(target)
    assert res.exit_code == 2, res.output
    assert f"{target}: no space left on the device while writing the outputs" in cli.flat(res.output)
    assert not target.exists()  # made by this run, and removed


def test_full_disk_while_writing_leaves_the_previous_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gates
) -> None:
    out = tmp_path / "out"
    assert _cli(out, "--gate", str(gates[0]), "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import fairaudit.report.writers as writers

    real = writers.atomic_write_text
    calls = []

    def write(path: Path, text: str) -> None:
        calls.append(path.name)
        if len(calls) == 3:  # results.json and report.md written, report.html hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(writers, "atomic_write_text", write)
    res = _cli(out, "--gate", str(gates[1]), "-q")
    assert res.exit_code == 2, res.output
    assert f"{out}: no space left on the device while writing the outputs; nothing was written" in cli.flat(
        res.output
    )
    assert "Traceback" not in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("name", ["o_[/]x", "[red]x", "a[bold]b[/bold]"])
def test_markup_in_out_is_printed_as_written(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    res = _cli(out, "-q")
    assert res.exit_code == 0, res.output
    assert f"Report: {out / 'report.html'}" in cli.flat(res.output)
    assert sorted(p.name for p in out.iterdir()) == sorted(AUDIT_SET)


def test_report_command_reused_out_and_markup(tmp_path: Path, gates) -> None:
    """`fairaudit report` into another folder replaces that folder's set (the stale
    results.json of another run goes); beside its own results.json it only re-renders."""
    src = tmp_path / "src"
    assert _cli(src, "--gate", str(gates[1]), "-q").exit_code == 1
    other = tmp_path / "o_[/]x"
    assert _cli(other, "--gate", str(gates[0]), "-q").exit_code == 0
    res = _invoke(["report", str(src / "results.json"), "--out", str(other)])
    assert res.exit_code == 1, res.output
    assert f"Wrote {other / 'report.html'}" in cli.flat(res.output)
    assert sorted(p.name for p in other.iterdir()) == ["junit.xml", "report.html", "report.md"]
    assert "Gate passed" not in (other / "report.md").read_text(encoding="utf-8")
    manifest = (src / "manifest.csv").read_bytes()
    res = cli.invoke(["report", str(src / "results.json"), "--format", "md", "-q"], columns=None)
    assert res.exit_code == 1, res.output
    assert (src / "manifest.csv").read_bytes() == manifest  # the same run's files stay
    assert sorted(p.name for p in src.iterdir()) == sorted(AUDIT_SET)


def test_report_out_that_is_a_file(tmp_path: Path, gates) -> None:
    src = tmp_path / "src"
    assert _cli(src, "-q").exit_code == 0
    target = tmp_path / "[red]file"
    target.write_text("x")
    res = _invoke(["report", str(src / "results.json"), "--out", str(target)])
    assert res.exit_code == 2, res.output
    assert f"{target}: --out names an existing file" in cli.flat(res.output)


# ----------------------------------------------------------------------------- two runs, one --out


def _state(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder`, hidden ones included, with its bytes (None: a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in folder.rglob("*")}


def _locked_commands(tmp_path: Path) -> dict[str, list[str]]:
    """Every command that writes an output set, as far as its lock (nothing is read first)."""
    from _helpers.paths import SAMPLE

    src = tmp_path / "src"
    images, demo = str(SAMPLE / "images"), str(SAMPLE / "demographics.csv")
    return {
        "audit": ["audit", *cli.sample_predictions_args("sex"), "--bootstrap", "20", "--workers", "1"],
        "normalize": ["normalize", images, "--method", "zscore", "--workers", "1"],
        "augment-check": ["augment-check", images, "--modality", "xray", "--demographics", demo,
                          "--attribute", "sex", "--workers", "1"],
        "report": ["report", str(src / "results.json")],
    }  # fmt: skip


@pytest.mark.parametrize("command", ["audit", "normalize", "augment-check", "report"])
def test_a_second_run_into_a_locked_out_is_refused_at_once(tmp_path: Path, gates, command: str) -> None:
    """Issue 19 leftover: while a run holds --out (its lock, held here by the test), another
    run into it exits 2 at once and changes nothing there."""
    import fcntl

    from fairaudit._util.atomic import LOCK_FILE

    if command == "report":
        assert _cli(tmp_path / "src", "-q").exit_code == 0
    out = tmp_path / "out"
    assert _cli(out, "--gate", str(gates[0]), "-q").exit_code == 0  # a previous set
    (out / "notes.txt").write_text("mine")
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = _state(out)
        started = time.monotonic()
        res = _invoke([*_locked_commands(tmp_path)[command], "--out", str(out), "-q"])
        assert res.exit_code == 2, res.output
        assert time.monotonic() - started < 30  # refused, not waiting for the lock
        assert (
            f"error: another fairaudit run is writing to {out}; wait for it or choose another --out."
            in cli.flat(res.output)
        )
        assert "Traceback" not in res.output
        assert _state(out) == before
    finally:
        os.close(fd)


def test_the_lock_is_left_by_no_run_and_a_stale_one_is_no_user_file(tmp_path: Path, gates) -> None:
    """The lock file exists only while a run writes: after a run --out holds the set alone. A
    lock file a killed run left (nobody holds it) neither blocks the next run, nor is kept as a
    user file, nor counted as an orphan."""
    from fairaudit._util.atomic import LOCK_FILE, remove_orphans

    out = tmp_path / "out"
    assert _cli(out, "--gate", str(gates[0]), "-q").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(AUDIT_SET)
    (out / LOCK_FILE).write_text("")  # what a kill -9 leaves
    assert remove_orphans(out) == 0 and (out / LOCK_FILE).exists()
    assert _cli(out, "--gate", str(gates[1]), "-q").exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(AUDIT_SET)


def test_a_link_planted_at_the_lock_file_is_refused_not_followed(tmp_path: Path, gates) -> None:
    from fairaudit._util.atomic import LOCK_FILE

    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    os.symlink(victim, out / LOCK_FILE)  # a dangling link: O_CREAT through it would create the victim
    res = _cli(out, "-q")
    assert res.exit_code == 2, res.output
    assert f"{out / LOCK_FILE}: is a symbolic link" in cli.flat(res.output)
    assert not victim.exists()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


# ----------------------------------------------------------------------------- a model run


@pytest.fixture(scope="module")
def seg_cohort(make_cohort) -> tuple[Path, Path]:
    """A small cohort and a TorchScript 'segmentation model' (foreground where the prepared
    image > 0.5), as tests/e2e/test_model_audit.py makes them."""
    torch = pytest.importorskip("torch")
    from fairaudit.models.preprocessing import make_spec

    root = make_cohort(n=16, size=32, seed=3, name="segcohort")

    class Threshold(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([0.5 - x[:, :1], x[:, :1] - 0.5], dim=1) * 10

    model = root / "thr.pt"
    torch.jit.trace(Threshold(), torch.zeros(1, 1, 16, 16)).save(str(model))
    spec = make_spec(input_size=[16, 16], intensity="minmax")
    Path(str(model) + ".json").write_text(
        json.dumps({"name": "thr", "task": "segmentation", "classes": ["bg", "lung"], "preprocessing": spec})
    )
    return root, model


def _seg_args(root: Path, model: Path, out: Path, salt: str) -> list[str]:
    return [
        "audit", str(root / "images"), "--model", str(model), "--trust-model",
        "--task", "segmentation", "--masks", str(root / "masks"), "--mask-labels", "1,2", "--demographics",
        str(root / "demographics.csv"), "--attribute", "sex", "--bootstrap", "20", "--min-group-size", "2",
        "--workers", "1", "--device", "cpu", "--salt", salt, "--quiet", "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow  # 25 s; the publishing code it exercises is covered by the step-5 test above
def test_kill_9_of_a_model_run_keeps_pred_masks_and_predictions_with_their_run(
    seg_cohort, tmp_path: Path
) -> None:
    """predictions.csv and pred_masks/ are written before the reports: a second run (another
    salt, so every mask file has another name) killed while publishing never leaves its
    masks beside the first run's results.json, nor the first run's masks beside its own."""
    root, model = seg_cohort
    out, first = tmp_path / "out", tmp_path / "first"
    refs = {}
    for name, salt in (("A", "s1"), ("B", "s2")):
        res = _run(_seg_args(root, model, out, salt))
        assert res.returncode == 0, res.stderr
        refs[name] = _snapshot(out)
        if name == "A":
            out.rename(first)
        else:
            shutil.rmtree(out)
    assert "pred_masks/" in refs["A"] and "predictions.csv" in refs["A"]
    assert not {n for n in refs["A"] if n.startswith("pred_masks/")} & {
        n for n in refs["B"] if n.startswith("pred_masks/")
    } - {"pred_masks/"}
    # 7 old entries moved away (results.json first), then manifest.csv, pred_masks,
    # predictions.csv, report.html, report.md, segmentation_cases.csv and results.json in.
    for step, expected in ((0, "A"), (4, None), (9, None), (13, None)):
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(first, out)
        killed = _run(_seg_args(root, model, out, "s2"), kill_at=step)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert _assert_one_set(out, refs) == expected, step
    res = _run(_seg_args(root, model, out, "s2"))
    assert res.returncode == 0, res.stderr
    assert _snapshot(out) == refs["B"]
    assert _leftovers(out) == []


# ----------------------------------------------------------------------------- normalize, augment-check


def test_normalize_reused_out_and_a_failed_run(tmp_path: Path) -> None:
    """normalize's images/ and previews/ move in with the reports: a second run (names
    in clear with --keep-ids) leaves none of the first run's files; a run that
    normalizes nothing publishes its manifest.csv alone, the earlier set removed."""
    from fairaudit.sample.cohort import generate_cohort

    root = tmp_path / "cohort"
    generate_cohort(root, n=6, size=32, seed=1)
    out = tmp_path / "[red]out"

    def normalize(images: Path, *extra: str):
        return _invoke(
            [
                "normalize",
                str(images),
                "--method",
                "zscore",
                "--out",
                str(out),
                "--workers",
                "1",
                "-q",
                *extra,
            ]
        )

    assert normalize(root / "images", "--salt", "s").exit_code == 0
    hashed = sorted(p.name for p in (out / "images").iterdir())
    res = normalize(root / "images", "--keep-ids")
    assert res.exit_code == 0, res.output
    clear = sorted(p.name for p in (out / "images").iterdir())
    assert len(clear) == len(hashed) and not set(clear) & set(hashed)
    assert len(list((out / "previews").iterdir())) == len(clear) // 2
    assert _leftovers(out) == []
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    res = normalize(broken)
    assert res.exit_code == 2, res.output
    assert f"see the reasons in {out / 'manifest.csv'}" in cli.flat(res.output)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv"]
    # an images/ folder of someone else's files in --out: refused before the work, kept
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    (mine / "images" / "scan.dcm").write_bytes(b"mine")
    res = _invoke(["normalize", str(root / "images"), "--method", "zscore", "--out", str(mine), "-q"])
    assert res.exit_code == 2, res.output
    assert f"{mine}: images/ already exists there and holds files fairaudit did not write" in cli.flat(
        res.output
    )
    assert sorted(p.name for p in mine.iterdir()) == ["images"]
    assert (mine / "images" / "scan.dcm").read_bytes() == b"mine"


def test_augment_check_out_that_is_a_file(tmp_path: Path) -> None:
    from fairaudit.sample.cohort import generate_cohort

    root = tmp_path / "cohort"
    generate_cohort(root, n=4, size=32, seed=1)
    target = tmp_path / "[bold]o"
    target.write_text("x")
    res = _invoke(["augment-check", str(root / "images"), "--modality", "xray", "--demographics",
                   str(root / "demographics.csv"), "--attribute", "sex", "--out", str(target), "-q"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert f"{target}: --out names an existing file, not a folder" in cli.flat(res.output)
    assert target.read_text() == "x"
