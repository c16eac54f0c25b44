"""Read a saved results.json back: `fairaudit report` re-renders it, AuditReport.load views it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_results(path: Path) -> dict[str, Any]:
    """Read and validate a results.json; every problem is an InputError naming the file."""
    from fairaudit.errors import InputError
    from fairaudit.schema import READABLE_VERSIONS, validate_results

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("results file not found.", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read: {exc}.", file=str(path)) from None
    try:
        results = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"is not valid JSON ({exc.msg} at line {exc.lineno}).", file=str(path)) from None
    if not isinstance(results, dict):
        raise InputError("is not a fairaudit results.json (expected a JSON object).", file=str(path))
    version = results.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise InputError(
            f"has schema_version {version!r}; this fairaudit reads versions {', '.join(READABLE_VERSIONS)}.",
            file=str(path),
            hint="Re-render it with the fairaudit version that wrote it (results['fairaudit_version']).",
        )
    try:
        validate_results(results)
    except ValueError as exc:
        raise InputError(f"is not a valid results.json: {exc}.", file=str(path)) from None
    return results
