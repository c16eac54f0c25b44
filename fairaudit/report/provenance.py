"""Provenance for results.json: what data, which code, when, how.

A compliance reviewer must be able to tie a report to the exact inputs and software that
produced it: the sha256 of manifest.csv (the account of every input row, ids already
pseudonymized) and of each input file, the versions of fairaudit and of the libraries
that computed the numbers, and the Python and platform. Library versions come from the
installed metadata, so nothing is imported for this (torch is listed only when it is
already loaded, i.e. a model ran).
"""

from __future__ import annotations

import hashlib
import logging
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from fairaudit._util.hashing import file_sha256
from fairaudit._version import __version__

__all__ = ["LIBRARIES", "collect_provenance", "file_sha256", "library_versions", "text_sha256"]

logger = logging.getLogger(__name__)

#: Libraries whose versions can change the numbers of an audit.
LIBRARIES: tuple[str, ...] = ("numpy", "scipy", "statsmodels", "pandas", "pydicom", "matplotlib", "jinja2")
_IF_LOADED: tuple[str, ...] = ("torch", "onnxruntime", "monai", "torchio")


def text_sha256(text: str) -> str:
    """sha256 of a text's UTF-8 bytes (how the reports write files)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def library_versions() -> dict[str, str]:
    """Installed versions of the computing libraries (and of model libraries already loaded)."""
    out: dict[str, str] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    for name in _IF_LOADED:
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", "unknown"))
    return out


def collect_provenance(
    manifest_text: str | None,
    input_files: Mapping[str, Path | str | None] | None = None,
    *,
    manifest_sha256: str | None = None,
) -> dict[str, Any]:
    """The `provenance` object of results.json.

    `input_files` maps a role (predictions, demographics, labels, gate_policy) to a path;
    missing or unreadable files are skipped (the manifest already says what was read).
    `manifest_sha256`: the manifest's hash when its text is not at hand (a spooled manifest).
    """
    files: dict[str, dict[str, str]] = {}
    for role, path in (input_files or {}).items():
        if path is None:
            continue
        try:
            if Path(path).is_file():
                files[role] = {"name": Path(path).name, "sha256": file_sha256(path)}
        except OSError as exc:  # pragma: no cover - unreadable after the audit read it
            logger.warning("could not hash %s: %s", path, exc)
    return {
        "fairaudit_version": __version__,
        "manifest_sha256": text_sha256(manifest_text) if manifest_text is not None else manifest_sha256,
        "input_files": files,
        "libraries": library_versions(),
        "platform": f"{platform.system()} {platform.machine()}",
    }
