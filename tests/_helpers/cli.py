"""Running `fairaudit` in this process (Typer's CliRunner) and the command lines tests share.

`invoke(args)` is the one CliRunner call of the test suite; `audit(*args, ...)` adds the flags
most audits in tests pass (a small --bootstrap, one worker, --quiet, --out). The `*_args`
functions spell out the inputs: the predictions audit of sample_data/, and a model run on a
cohort folder written by `fairaudit.sample.cohort.generate_cohort` (sample_data/ included).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from click.testing import Result

from _helpers.paths import ROOT, SAMPLE

CLASSIFIER = "bundled:cxr_finding_classifier"
#: The command line that runs fairaudit in a child process.
FAIRAUDIT = [sys.executable, "-m", "fairaudit"]


def invoke(
    args: Sequence[object],
    *,
    env: Mapping[str, str] | None = None,
    columns: int | None = 200,
    catch_exceptions: bool = True,
) -> Result:
    """`fairaudit ARGS` through CliRunner. `columns` sets COLUMNS so that rich wraps messages
    where the test expects (None: the environment's own); `env` adds variables."""
    from typer.testing import CliRunner

    from fairaudit.cli.main import app

    variables = {} if columns is None else {"COLUMNS": str(columns)}
    variables.update(env or {})
    return CliRunner().invoke(
        app, [str(a) for a in args], env=variables or None, catch_exceptions=catch_exceptions
    )


def child_env(changes: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment with `changes` (a None value removes the variable)."""
    merged = {**os.environ, **(changes or {})}
    return {key: value for key, value in merged.items() if value is not None}


def run_module(
    args: Sequence[object], *, env: Mapping[str, str | None] | None = None, timeout: float = 600, **kw
) -> subprocess.CompletedProcess:
    """`python -m fairaudit ARGS` in a child process (from the repository's root unless `kw`
    names a cwd), with `child_env(env)`; its output captured as text."""
    kw.setdefault("cwd", ROOT)
    return subprocess.run(
        [*FAIRAUDIT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(env),
        **kw,
    )


# Runs its arguments as a child and prints, on a last line of its own, the child's seconds and
# its peak resident memory in KiB (the peak of this wrapper's children only, not of the test's).
_MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.monotonic()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "dt = time.monotonic() - t\n"
    "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr)\n"
    "print(); print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(p.returncode)\n"
)


def run_measured(
    args: Sequence[object], *, cwd: Path, env: Mapping[str, str | None] | None = None, timeout: float = 600
) -> tuple[subprocess.CompletedProcess, float, int]:
    """`python -m fairaudit ARGS` in a grandchild: its result (output as text), its wall-clock
    seconds and its peak resident memory (KiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *FAIRAUDIT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env(env),
        timeout=timeout,
    )
    body, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    seconds, peak = last.split()
    proc.stdout = body.removesuffix("\n")
    return proc, float(seconds), int(peak)


def audit(
    *args: object,
    out: Path | None = None,
    bootstrap: int | None = None,
    workers: int | None = None,
    quiet: bool = False,
    **kw,
) -> Result:
    """`fairaudit audit ARGS [--bootstrap N] [--workers N] [--quiet] [--out OUT]`; `kw` as for `invoke`."""
    argv = ["audit", *args]
    if bootstrap is not None:
        argv += ["--bootstrap", bootstrap]
    if workers is not None:
        argv += ["--workers", workers]
    if quiet:
        argv.append("--quiet")
    if out is not None:
        argv += ["--out", out]
    return invoke(argv, **kw)


def sample_predictions_args(*attributes: str) -> list[str]:
    """The predictions audit of sample_data/ by `attributes`."""
    args = [
        "--predictions",
        str(SAMPLE / "predictions.csv"),
        "--demographics",
        str(SAMPLE / "demographics.csv"),
    ]
    for name in attributes:
        args += ["--attribute", name]
    return args


def model_run_args(
    cohort: Path = SAMPLE, model: object = CLASSIFIER, images: Path | None = None
) -> list[str]:
    """A model run on `cohort`'s images (or `images`) with its demographics and finding labels."""
    return [
        str(images or cohort / "images"), "--model", str(model),
        "--demographics", str(cohort / "demographics.csv"), "--labels", str(cohort / "labels.csv"),
        "--label-column", "finding",
    ]  # fmt: skip


def flat(text: str) -> str:
    """`text` with every run of white space one space: rich wraps long messages."""
    return " ".join(text.split())


def squash(text: str) -> str:
    """`text` without white space: rich may wrap a message anywhere there was a space."""
    return re.sub(r"\s+", "", text)


def read_results(out: Path, name: str = "results.json", *, drop_created: bool = False) -> dict:
    """results.json of an output folder, read back (without `created` if asked)."""
    data = json.loads((out / name).read_text(encoding="utf-8"))
    if drop_created:
        data.pop("created", None)
    return data
