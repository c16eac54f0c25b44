"""What a run had finished when it was interrupted (Ctrl-C / SIGINT), for the exit message.

Long steps note their progress here (`note`); `fairaudit.cli.main.main` turns it into
one line on stderr ("interrupted: 1200 of 5000 files scored; ...") and exit code 130.
Typer already maps KeyboardInterrupt to exit code 130.

`FAIRAUDIT_TEST_INTERRUPT_AFTER=N` (tests only) sends this process (its whole process
group when it leads one, as a terminal's Ctrl-C does) a real SIGINT once N files are
scored, so a test can interrupt a run at a known point.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from fairaudit.errors import arg

_STATE: dict[str, Any] = {}
_SENT = False


def note(**fields: Any) -> None:
    """Record progress (files scored, total, cache folder, ...).

    A field may be a callable, evaluated only if the summary is asked for (a total that
    costs a walk of the folder)."""
    _STATE.update(fields)


def reset() -> None:
    global _SENT
    _STATE.clear()
    _SENT = False


def summary() -> str:
    """One line: what finished before the interruption and what was kept."""
    if "scored" not in _STATE:
        return "interrupted before any file was scored; no report written"
    total = _STATE.get("total")
    if callable(total):
        try:
            total = total()
        except Exception:  # noqa: BLE001 - the message must come out whatever happened
            total = None
    done = f"{_STATE['scored']} of {total}" if total is not None else str(_STATE["scored"])
    kept = f"cached in {_STATE['cache']} for {arg('resume')}" if _STATE.get("cache") else "nothing cached"
    return f"interrupted: {done} files scored; {kept}; no report written"


def maybe_test_interrupt(scored: int) -> None:
    """The test hook described in the module doc."""
    global _SENT
    limit = os.environ.get("FAIRAUDIT_TEST_INTERRUPT_AFTER")
    if _SENT or not limit or scored < int(limit):
        return
    _SENT = True
    # One line on stderr for the test that set the hook: if the run is not interrupted, its
    # failure message shows whether the signal went out and how this process treats it.
    handler = signal.getsignal(signal.SIGINT)
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    os.write(
        2,
        f"test hook: SIGINT after {scored} files scored (SIGINT handler {getattr(handler, '__name__', handler)}, "
        f"blocked {blocked})\n".encode(),
    )
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGINT)
    else:
        os.kill(os.getpid(), signal.SIGINT)
