"""Sizes given on the command line ("2GB", "512MiB", "4096"), as numbers of bytes.

Kept apart from the DICOM reader so that parsing a flag imports nothing heavy (a
predictions-only audit never imports pydicom, docs/dicom.md)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from '2GB', '512MiB', '1.5G' or '4096' (binary units: 1 GB = 2**30 bytes)."""
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise ValueError(f"not a size: give bytes, or a number with KB, MB, GB or TB (got '{text}')")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < 1:
        raise ValueError("a size must be at least 1 byte")
    return value
