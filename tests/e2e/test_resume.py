"""Interrupting `fairaudit audit --model` (SIGINT) and resuming it with --resume.

The expected answer is an uninterrupted run of the same command: the resumed run must
write the same results.json (apart from `created`, `command` and the run's timings),
the same predictions.csv and manifest.csv, and must not score again the files the
interrupted run cached. The interruption is a real SIGINT sent to the whole process
group, as a terminal's Ctrl-C is (the FAIRAUDIT_TEST_INTERRUPT_AFTER hook only picks
the moment).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from _helpers import cli

pytest.importorskip("torch")

N = 60
INTERRUPT_AFTER = 20


@pytest.fixture(scope="module")
def cohort(make_cohort) -> Path:
    return make_cohort(n=N, size=32, seed=5)


def _audit(cohort: Path, out: Path, *extra: str, interrupt: int | None = None) -> subprocess.CompletedProcess:
    args = [
        *cli.FAIRAUDIT, "audit", *cli.model_run_args(cohort), "--attribute", "sex", "--attribute", "race",
        "--bootstrap", "50", "--min-group-size", "5", "--device", "cpu",
        "--batch-size", "4", "--workers", "2", "--salt", "s", "--quiet", "--format", "json", "--out", str(out),
        *extra,
    ]  # fmt: skip
    hook = None if interrupt is None else str(interrupt)
    env = cli.child_env({"OMP_NUM_THREADS": "1", "COLUMNS": "200", "FAIRAUDIT_TEST_INTERRUPT_AFTER": hook})
    with subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_sigint_default,
    ) as proc:
        stdout, stderr = proc.communicate(timeout=300)
    # No live process of the run's group is left behind (decode workers, resource tracker).
    deadline = time.monotonic() + 10
    while _alive_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive_in_group(proc.pid) == []
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _sigint_default() -> None:
    """SIGINT handled as in a terminal's foreground job. A shell without job control starts
    a background command (`pytest ... &` in a script) with SIGINT ignored, the child would
    inherit that, and Python keeps an ignored SIGINT ignored: the run could not be stopped.
    Found by the hook's stderr line (SIGINT handler 1 = SIG_IGN) in such a run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive_in_group(pgid: int) -> list[int]:
    """Processes of group `pgid` that have not exited (an unreaped zombie has exited)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _comparable(path: Path) -> dict:
    results = json.loads(path.read_text())
    for key in ("created", "command"):
        results.pop(key)
    run = results["model"].pop("run")
    return results | {"_run_counts": {k: run[k] for k in ("n_files", "n_predicted", "n_unreadable")}}


def _cached_lines(out: Path) -> list[str]:
    (scores,) = (out / ".fairaudit-cache").glob("*.scores")
    return scores.read_text().splitlines()


def test_interrupted_run_exits_130_and_resumes_to_the_same_results(cohort: Path, tmp_path: Path) -> None:
    full = _audit(cohort, tmp_path / "full")
    assert full.returncode == 0, full.stderr

    out = tmp_path / "resumed"
    cut = _audit(cohort, out, interrupt=INTERRUPT_AFTER)
    assert cut.returncode == 130, cut.stderr
    # Nothing but the cache: no report, no results.json, no predictions.csv, no temporary file.
    assert sorted(p.name for p in out.iterdir()) == [".fairaudit-cache"]
    cached = _cached_lines(out)
    assert INTERRUPT_AFTER <= len(cached) < N
    message = cli.flat(cut.stderr)
    assert f"interrupted: {len(cached)} of {N} files scored" in message
    assert "no report written" in message
    assert "Traceback" not in cut.stderr  # workers ignore SIGINT; the parent stops cleanly
    # The cache holds content hashes and scores only: no path, no DICOM id.
    assert all(re.fullmatch(r"[0-9a-f]{64} \S+ [0-9a-f]{16}", line) for line in cached)
    demo = (cohort / "demographics.csv").read_text().splitlines()[1:]
    ids = {cell for row in demo for cell in row.split(",")[:2]}
    text = "\n".join(p.read_text() for p in (out / ".fairaudit-cache").iterdir())
    assert not any(i in text for i in ids if len(i) > 4)

    again = _audit(cohort, out, "--resume")
    assert again.returncode == 0, again.stderr
    assert f"resume: {len(cached)} of {N} files scored from the cache" in cli.flat(again.stderr)
    # The cached files were not scored again: each file's hash is in the cache once.
    after = _cached_lines(out)
    assert len(after) == N and len({line.split()[0] for line in after}) == N
    assert after[: len(cached)] == cached
    run = json.loads((out / "results.json").read_text())["model"]["run"]
    assert run["from_cache"] == len(cached)

    assert _comparable(out / "results.json") == _comparable(tmp_path / "full" / "results.json")
    for name in ("predictions.csv", "manifest.csv"):
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name


def test_resume_without_a_model_is_a_usage_error(tmp_path: Path) -> None:

    preds = tmp_path / "p.csv"
    preds.write_text("id,label,score,sex\na,1,0.9,F\n")
    res = cli.invoke(
        ["audit", "--predictions", str(preds), "--attribute", "sex", "--resume", "--out", str(tmp_path)],
        columns=None,
    )
    assert res.exit_code == 2
    assert "--resume" in res.output


def test_cache_skips_a_line_cut_short_and_a_resumed_append_starts_a_new_line(tmp_path: Path) -> None:
    from fairaudit.models.pred_cache import PredictionCache

    info = {"name": "m", "sha256": "ab" * 32, "task": "classification", "device": "cpu"}
    cache = PredictionCache(tmp_path, info)
    a, b, c = "1" * 64, "2" * 64, "3" * 64
    cache.add([(a, 0.25), (b, 1 / 3)])
    cache.close()
    with open(cache.path, "a") as fh:  # a crash in the middle of a line
        fh.write(c[:30])
    assert cache.load() == {a: 0.25, b: 1 / 3}  # exact floats (repr round trip)
    cache.add([(c, 0.5)])
    cache.close()
    assert cache.load() == {a: 0.25, b: 1 / 3, c: 0.5}
    # Another model (or another preprocessing, device) gets its own file.
    assert PredictionCache(tmp_path, {**info, "sha256": "cd" * 32}).load() == {}
    assert PredictionCache(tmp_path, {**info, "device": "cuda"}).load() == {}


def test_atomic_path_leaves_no_file_when_the_writer_fails(tmp_path: Path) -> None:
    from fairaudit._util.atomic import atomic_path

    target = tmp_path / "predictions.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".csv"
        tmp.write_text("new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]
