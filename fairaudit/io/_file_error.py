"""One exception for a file a reader cannot use, with the manifest's status and reason.

Why one: the PNG/JPEG and NIfTI readers report a bad file the same way (a manifest row
with "failed" or "skipped" and a one-line reason), and the decode workers turn either into
a failed outcome without knowing which reader raised it.
"""

from __future__ import annotations


class FileError(Exception):
    """A file that cannot be used: `status` ("failed" or "skipped") and a one-line `reason`."""

    def __init__(self, reason: str, status: str = "failed") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
