"""Read files on a Dask cluster (`--scheduler`): the same outcomes as `_parallel`, in path order.

Chunks of files go to the workers through `ClusterSession.ordered` (a bounded window of
tasks; outcomes stream back in submission order, so in sorted path order). A worker lost
mid-chunk is Dask's to handle (its tasks run again elsewhere). A chunk whose workers kept
dying (KilledWorker) is read again one file per task, and the file that still kills its
worker is recorded as failed, like a crash in a local worker process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fairaudit._util.privacy import shown_path
from fairaudit.io.dicom._decode import DecodeOptions, FileOutcome, read_file
from fairaudit.io.dicom._scan import WalkEntry

if TYPE_CHECKING:
    from fairaudit.cluster import ClusterSession

log = logging.getLogger(__name__)

# Files per task: more than locally, to amortize a task's round trip through the scheduler.
CHUNK_HEADER = 64
CHUNK_DECODE = 8
LOST_REASON = "the Dask worker died while reading this file (crash or out of memory)"


def read_entries(
    entries: list[WalkEntry], root: str, header_only: bool, options: DecodeOptions
) -> list[FileOutcome]:
    """Runs on a worker: one outcome per entry (a walk problem needs no reading).

    A folder the worker cannot see is an error of the whole run, not of each file: the
    data must be on storage every worker mounts at the client's path (docs/dask.md).
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(
            f"{root} is not a folder on the Dask worker (mount the data at the same path)"
        )
    return [
        FileOutcome(e.rel, e.problem[0], e.problem[1], None)
        if e.problem is not None
        else read_file(e.path, base, header_only=header_only, options=options)
        for e in entries
    ]


def cluster_outcomes(
    session: ClusterSession,
    root: Path,
    chunks: Iterator[list[WalkEntry]],
    header_only: bool,
    options: DecodeOptions,
) -> Iterator[FileOutcome]:
    """Every file of `chunks`, read on the cluster, in the order given."""

    def one_by_one(entries: list[WalkEntry], _: BaseException) -> list[FileOutcome]:
        outcomes: list[FileOutcome] = []
        for entry, part in session.one_at_a_time(read_entries, entries, str(root), header_only, options):
            if part is None:
                log.warning("%s: %s", shown_path(entry.rel), LOST_REASON)
                part = [FileOutcome(entry.rel, "failed", LOST_REASON, None)]
            outcomes.extend(part)
        return outcomes

    for _, outcomes in session.ordered(
        read_entries, chunks, str(root), header_only, options, on_lost=one_by_one
    ):
        yield from outcomes
