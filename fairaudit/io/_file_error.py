"""One exception for a file a reader cannot use, with the manifest's status and reason.

Why one: the PNG/JPEG and NIfTI readers report a bad file the same way (a manifest row
with "failed" or "skipped" and a one-line reason, written by `short_reason`), and the decode
workers turn either into a failed outcome without knowing which reader raised it.
"""

from __future__ import annotations


class FileError(Exception):
    """A file that cannot be used: `status` ("failed" or "skipped") and a one-line `reason`."""

    def __init__(self, reason: str, status: str = "failed") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def short_reason(exc: BaseException, context: str) -> str:
    """One line for the manifest: the context, the exception type and the first line of its
    message; an OSError gives its strerror only (its message can quote a path)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{type(exc).__name__}: {exc.strerror}"
    else:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    text = f"{context}: {text}"
    return text if len(text) <= 240 else text[:237] + "..."
