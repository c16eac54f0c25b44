"""`--scheduler` (issue 8): the per-file work on a Dask cluster gives the same results.

The independent answer is the local run of the same command: a LocalCluster of worker
processes must give the same results.json (apart from `created`), manifest.csv and
predictions.csv; a worker killed mid-run must not lose a file; a file that keeps killing
its worker is recorded like a local failure; without dask the option says how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from fairaudit.cli._common import command_line
from fairaudit.cluster import parse_scheduler
from fairaudit.errors import InputError

from _helpers import cli
from _helpers.paths import SAMPLE

distributed = pytest.importorskip("distributed")
# Each test starts worker processes of a LocalCluster: under pytest-xdist, one such test at a time.
pytestmark = pytest.mark.xdist_group("dask")


def _results(out: Path, name: str = "results.json") -> dict:
    return cli.read_results(out, name, drop_created=True)


def _cohort(tmp_path: Path, n: int | None = None) -> Path:
    """sample_data's images (the first n), plus a corrupt file and a text file."""
    folder = tmp_path / "images"
    files = sorted(p for p in (SAMPLE / "images").rglob("*") if p.is_file())
    for src in files[:n] if n else files:
        dst = folder / src.relative_to(SAMPLE / "images")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    (folder / "notes.txt").write_text("not an image")
    return folder


# ---- the option


@pytest.mark.parametrize("value", ["local:0", "local:x", "localhost:8786", "8786", ""])
def test_bad_scheduler_is_an_input_error(value: str) -> None:
    with pytest.raises(InputError, match="scheduler="):
        parse_scheduler(value)


def test_scheduler_forms() -> None:
    assert parse_scheduler("local:3").local_workers == 3
    assert parse_scheduler("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"


def test_bad_scheduler_exits_2_naming_the_option(tmp_path: Path) -> None:
    res = cli.invoke(["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
         str(SAMPLE / "demographics.csv"), "--attribute", "sex", "--scheduler", "sometimes",
         "--out", str(tmp_path / "o")], columns=None)  # fmt: skip
    assert res.exit_code == 2
    assert "--scheduler" in res.output and "local:N" in res.output


@pytest.mark.parametrize("command", ["audit", "normalize", "augment-check"])
def test_without_dask_the_option_says_how_to_install(command: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    args = {
        "audit": ["audit", "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
                  str(SAMPLE / "demographics.csv"), "--attribute", "sex"],
        "normalize": ["normalize", str(SAMPLE / "images"), "--method", "zscore"],
        "augment-check": ["augment-check", str(SAMPLE / "images"), "--modality", "xray", "--demographics",
                          str(SAMPLE / "demographics.csv"), "--attribute", "sex"],
    }[command]  # fmt: skip
    res = cli.invoke([*args, "--scheduler", "local:2", "--out", str(tmp_path / "o")], columns=None)
    assert res.exit_code == 2, res.output
    assert "pip install 'fairaudit-imaging[dask]'" in cli.flat(res.output)


def test_recorded_command_leaves_out_where_it_ran() -> None:
    argv = ["audit", "x", "--scheduler", "local:2", "--seed", "1", "--scheduler=tcp://h:1", "--workers", "3"]
    assert command_line(argv) == "fairaudit audit x --seed 1"


# ---- same results locally and on a LocalCluster


def _shown(rel: str) -> str:
    """How manifest.csv names a file under --salt s: the pseudonym of its path (issue 19, point 8)."""
    from fairaudit._util.privacy import IdHasher

    return IdHasher("s").path(rel)


def _audit_args(folder: Path) -> list[str]:
    return [
        "audit", *cli.model_run_args(images=folder), "--attribute", "race", "--attribute", "dicom:Manufacturer",
        "--batch-size", "16", "--bootstrap", "200", "--seed", "3", "--device", "cpu", "--quiet",
        "--salt", "s", "--format", "json,md",
    ]  # fmt: skip


def _run_twice(args: list[str], out: Path, monkeypatch, name: str = "results.json") -> tuple[dict, dict]:
    """Run `args` locally, then on a LocalCluster of 2 workers, into the same folder as a user
    would (sys.argv as typed, for the recorded command); each run's outputs, read back."""
    runs = {}
    for where, extra in (("local", ["--workers", "2"]), ("cluster", ["--scheduler", "local:2"])):
        argv = [*args, "--out", str(out), *extra]
        monkeypatch.setattr(sys, "argv", ["fairaudit", *argv])
        res = cli.invoke(argv, columns=None)
        assert res.exit_code in (0, 1), res.output
        files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        runs[where] = {"exit": res.exit_code, "results": _results(out, name), "files": files}
        shutil.rmtree(out)
    return runs["local"], runs["cluster"]


def _without_created_line(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if "fairaudit 0." not in line]


def test_model_audit_is_the_same_on_a_local_cluster(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    folder = _cohort(tmp_path)
    here, there = _run_twice(_audit_args(folder), tmp_path / "out", monkeypatch)
    assert there["exit"] == here["exit"]
    assert there["results"] == here["results"]  # the recorded command included
    for name in ("manifest.csv", "predictions.csv"):
        assert there["files"][name] == here["files"][name]
    assert _without_created_line(there["files"]["report.md"]) == _without_created_line(
        here["files"]["report.md"]
    )
    manifest = there["files"]["manifest.csv"].decode()
    # failures on workers are recorded
    assert _shown("broken.dcm") in manifest and _shown("notes.txt") in manifest
    assert there["results"]["inputs"]["n_included"] == 320
    assert "--scheduler" not in there["results"]["command"]


@pytest.mark.slow  # test_model_audit_is_the_same_on_a_local_cluster runs the same Dask model path
def test_segmentation_model_audit_is_the_same_on_a_local_cluster(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    folder = _cohort(tmp_path, n=40)
    args = [
        "audit", str(folder), "--task", "segmentation", "--model", "bundled:cxr_lung_segmenter",
        "--masks", str(SAMPLE / "masks"), "--mask-labels", "1,2", "--demographics", str(SAMPLE / "demographics.csv"),
        "--attribute", "sex", "--bootstrap", "100", "--seed", "1", "--device", "cpu", "--quiet",
        "--salt", "s", "--format", "json", "--min-group-size", "5", "--batch-size", "8",
    ]  # fmt: skip
    here, there = _run_twice(args, tmp_path / "out", monkeypatch)
    assert there["exit"] == here["exit"]
    assert there["results"] == here["results"]
    masks = sorted(k for k in here["files"] if k.startswith("pred_masks/") and k.endswith(".png"))
    assert len(masks) == 40
    assert {k: there["files"].get(k) for k in masks} == {k: here["files"][k] for k in masks}


@pytest.mark.parametrize(
    "command", ["normalize", pytest.param("augment-check", marks=pytest.mark.slow)]
)  # one command in `make test`: both hand their images to the scheduler the same way
def test_normalize_and_augment_check_accept_the_scheduler(command: str, tmp_path: Path, monkeypatch) -> None:
    folder = _cohort(tmp_path, n=60)
    extra = {
        "normalize": ["--method", "zscore", "--no-previews", "--target-shape", "64,64"],
        "augment-check": ["--n-augment", "2", "--modality", "xray"],
    }[command]
    name = {"normalize": "normalize.json", "augment-check": "augment_check.json"}[command]
    args = [
        command, str(folder), "--demographics", str(SAMPLE / "demographics.csv"), "--attribute", "sex",
        "--bootstrap", "100", "--seed", "2", "--min-group-size", "5", "--salt", "s", "--quiet",
        "--format", "json", *extra,
    ]  # fmt: skip
    here, there = _run_twice(args, tmp_path / "out", monkeypatch, name)
    assert here["exit"] == there["exit"] == 0
    assert there["results"] == here["results"]
    assert there["files"]["manifest.csv"] == here["files"]["manifest.csv"]
    assert _shown("broken.dcm") in here["files"]["manifest.csv"].decode()


# ---- lost workers


@pytest.mark.slow  # test_a_worker_killed_mid_model_run_loses_no_file: the same resubmission
def test_a_worker_killed_mid_run_loses_no_file(tmp_path: Path) -> None:
    from fairaudit import cluster
    from fairaudit.io.dicom import iter_outcomes

    folder = _cohort(tmp_path)
    expected = [
        (o.path, o.status) for o in iter_outcomes(folder, header_only=False, workers=1, progress=False)
    ]
    got = []
    with cluster.connect("local:2") as session:
        assert session is not None
        stream = iter_outcomes(folder, header_only=False, progress=False)
        got.append(next(stream))
        pids = session.client.run(os.getpid)  # {worker address: pid}
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)  # the nanny starts a new worker; Dask reruns its tasks
        got.extend(stream)
        assert victim not in session.client.run(os.getpid).values()
    assert [(o.path, o.status) for o in got] == expected
    assert len(got) == 322


def test_a_file_that_keeps_killing_its_worker_is_recorded(tmp_path: Path) -> None:
    import dask

    from fairaudit import cluster
    from fairaudit.io.dicom._cluster import LOST_REASON

    folder = _cohort(tmp_path, n=20)
    poison = sorted(p for p in folder.rglob("*.dcm") if p.name != "broken.dcm")[5]
    marker = str(poison)

    def crash_on_poison(entries, root, header_only, options):  # runs on the worker
        from fairaudit.io.dicom._cluster import read_entries

        if any(str(e.path) == marker for e in entries):
            os._exit(1)  # the worker process dies, as on a segfault in a decoder
        return read_entries(entries, root, header_only, options)

    import fairaudit.io.dicom._cluster as remote

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        original = remote.read_entries
        remote.read_entries = crash_on_poison  # the client submits this function to the workers
        try:
            with cluster.connect("local:2"):
                from fairaudit.io.dicom import iter_outcomes

                outcomes = list(iter_outcomes(folder, header_only=False, progress=False))
        finally:
            remote.read_entries = original
    by_path = {o.path: o for o in outcomes}
    assert len(outcomes) == 22
    lost = by_path[str(poison.relative_to(folder))]
    assert lost.status == "failed" and lost.reason == LOST_REASON
    assert sum(o.status == "ok" for o in outcomes) == 20 - 1


def test_dead_scheduler_address_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from fairaudit import cluster

    holder: list[BaseException] = []

    def go() -> None:
        try:
            with cluster.connect(f"tcp://127.0.0.1:{port}"):
                pass
        except BaseException as exc:  # noqa: BLE001
            holder.append(exc)

    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        t = threading.Thread(target=go)
        t.start()
        t.join(60)
    assert holder and isinstance(holder[0], InputError)
    assert f"127.0.0.1:{port}" in str(holder[0])


@pytest.mark.slow  # test_a_file_that_keeps_killing_its_worker_is_recorded: the same retry rule
def test_a_model_block_that_keeps_killing_its_worker_loses_only_that_file(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import dask

    import fairaudit.models.inference as inference
    from fairaudit import cluster
    from fairaudit.io.dicom._cluster import LOST_REASON
    from fairaudit.models.loading import load_predictor

    folder = _cohort(tmp_path, n=20)
    poison = sorted(p for p in folder.rglob("*.dcm") if p.name != "broken.dcm")[7]
    marker = str(poison)
    predictor = load_predictor("bundled:cxr_finding_classifier", "cpu")
    local = inference.run_inference(predictor, folder, batch_size=8, workers=1, progress=False)

    def crash_on_poison(entries, *args):  # runs on the worker
        from fairaudit.models.blocks import remote_block

        if any(str(e.path) == marker for e in entries):
            os._exit(1)
        return remote_block(entries, *args)

    original = inference.remote_block
    inference.remote_block = crash_on_poison
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}), cluster.connect("local:2"):
            remote = inference.run_inference(predictor, folder, batch_size=8, progress=False)
    finally:
        inference.remote_block = original
    rel = str(poison.relative_to(folder))
    assert remote.n_files == local.n_files == 22
    assert (rel, f"failed: {LOST_REASON}") in remote.unreadable
    # The bundled classifier is multi-output: one score per output and file (run.outputs).
    expected = {
        r["path"]: s for r, s in zip(local.records, _per_file(local), strict=True) if r["path"] != rel
    }
    got = {r["path"]: s for r, s in zip(remote.records, _per_file(remote), strict=True)}
    assert got.keys() == expected.keys()  # the poisoned block's other files ran one by one
    assert np.allclose([got[k] for k in expected], [expected[k] for k in expected], atol=1e-6)


def _per_file(run: object) -> list:
    """Each file's scores: a tuple per file of a multi-output model, else its one score."""
    outputs = getattr(run, "outputs", {})
    return list(zip(*outputs.values(), strict=True)) if outputs else list(run.scores)  # type: ignore[attr-defined]


def test_data_the_workers_cannot_see_stops_the_run_with_a_hint(tmp_path: Path) -> None:
    from fairaudit import cluster
    from fairaudit.io.dicom import iter_outcomes
    from fairaudit.io.dicom._scan import walk

    folder = _cohort(tmp_path, n=5)
    entries = list(walk(folder))
    shutil.rmtree(folder)  # as if the data were on the client's disk only
    with cluster.connect("local:1"), pytest.raises(InputError) as err:
        list(iter_outcomes(folder, header_only=True, progress=False, entries=entries))
    assert "not a folder on the Dask worker" in str(err.value) and "same path" in str(err.value)


def test_an_existing_cluster_by_its_tcp_address(tmp_path: Path, monkeypatch) -> None:
    """`--scheduler tcp://HOST:PORT`: a cluster fairaudit did not start (and does not stop)."""
    folder = _cohort(tmp_path, n=30)
    args = [
        "audit", str(folder), "--predictions", str(SAMPLE / "predictions.csv"), "--demographics",
        str(SAMPLE / "demographics.csv"), "--attribute", "sex", "--attribute", "dicom:Manufacturer",
        "--bootstrap", "100", "--seed", "4", "--salt", "s", "--quiet", "--format", "json",
        "--min-group-size", "5",
    ]  # fmt: skip
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as existing:
        runs = {}
        for where, extra in (
            ("local", ["--workers", "1"]),
            ("cluster", ["--scheduler", existing.scheduler_address]),
        ):
            argv = [*args, "--out", str(tmp_path / "out"), *extra]
            monkeypatch.setattr(sys, "argv", ["fairaudit", *argv])
            res = cli.invoke(argv, columns=None)
            assert res.exit_code in (0, 1), res.output
            runs[where] = (_results(tmp_path / "out"), (tmp_path / "out" / "manifest.csv").read_text())
            shutil.rmtree(tmp_path / "out")
        with distributed.Client(existing) as client:  # still up: fairaudit only disconnected
            assert len(client.nthreads()) == 1
    assert runs["cluster"] == runs["local"]
    assert "dicom:Manufacturer" in json.dumps(runs["local"][0])
    assert _shown("broken.dcm") in runs["local"][1]


def test_tasks_are_submitted_in_a_bounded_window_and_come_back_in_order() -> None:
    """The client never has more than `window` tasks (so results) in flight, whatever the input size."""
    from fairaudit.cluster import ClusterSession, SchedulerSpec

    state = {"in_flight": 0, "max": 0, "submitted": 0}

    class Future:
        def __init__(self, value: int) -> None:
            self.value = value

        def result(self) -> int:
            return self.value

        def release(self) -> None:
            state["in_flight"] -= 1

        def cancel(self) -> None:
            state["in_flight"] -= 1

    class Client:
        def nthreads(self) -> dict[str, int]:
            return {"w1": 1, "w2": 1}

        def submit(self, fn, item, *args, pure: bool = True) -> Future:
            state["in_flight"] += 1
            state["submitted"] += 1
            state["max"] = max(state["max"], state["in_flight"])
            return Future(fn(item, *args))

    session = ClusterSession(Client(), SchedulerSpec(local_workers=2))
    out = [r for _, r in session.ordered(lambda i, k: i * k, range(1000), 3)]
    assert out == [i * 3 for i in range(1000)]
    assert state["max"] == 6  # 3 per worker thread, 2 threads
    assert state["in_flight"] == 0
    stream = session.ordered(lambda i: i, iter(range(10**9)))  # an endless source is fine
    assert [next(stream)[1] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert state["submitted"] < 1000 + 20
    stream.close()
    assert state["in_flight"] == 0  # closing early cancels what was in flight


def test_a_worker_killed_mid_model_run_loses_no_file(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import fairaudit.models.inference as inference
    from fairaudit import cluster
    from fairaudit.models.loading import load_predictor

    folder = _cohort(tmp_path, n=120)
    predictor = load_predictor("bundled:cxr_finding_classifier", "cpu")
    local = inference.run_inference(predictor, folder, batch_size=8, workers=1, progress=False)
    killed = []

    def kill_after_first(blocks, *args):
        for i, block in enumerate(blocks):
            if i == 0:
                session = cluster.active()
                pids = session.client.run(os.getpid)
                killed.append(sorted(pids.values())[0])
                os.kill(killed[0], signal.SIGKILL)
            yield block

    original = inference._block_progress
    inference._block_progress = kill_after_first
    try:
        with cluster.connect("local:2"):
            remote = inference.run_inference(predictor, folder, batch_size=8, progress=False)
    finally:
        inference._block_progress = original
    assert killed
    assert remote.n_files == local.n_files == 122
    assert remote.unreadable == local.unreadable
    assert [r["path"] for r in remote.records] == [r["path"] for r in local.records]
    # The same blocks, so the same batches and numbers.
    assert remote.scores == local.scores and remote.outputs == local.outputs


@pytest.mark.parametrize("command", ["audit", "normalize", "augment-check"])
def test_help_shows_the_option_and_the_extra(command: str) -> None:
    res = cli.invoke([command, "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.replace("│", " ").split())
    assert "--scheduler" in text and "fairaudit-imaging[dask]" in text
