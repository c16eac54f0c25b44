"""fairaudit: fairness audits of medical-imaging models, per demographic group.

The Python API (docs/python-api.md): `audit` (predictions), `audit_model` (a model run on a
DICOM folder), `audit_segmentation` (masks) return an `AuditReport`; `load` reads a saved
results.json back. They are imported on first use, so `import fairaudit` (and the CLI's
`--help`) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fairaudit._version import __version__

if TYPE_CHECKING:
    from fairaudit.api import audit, audit_model, audit_segmentation, load
    from fairaudit.errors import InputError
    from fairaudit.results import AuditReport

__all__ = ["AuditReport", "InputError", "__version__", "audit", "audit_model", "audit_segmentation", "load"]

_LAZY = {
    "audit": "fairaudit.api",
    "audit_model": "fairaudit.api",
    "audit_segmentation": "fairaudit.api",
    "load": "fairaudit.api",
    "AuditReport": "fairaudit.results",
    "InputError": "fairaudit.errors",
}


def __getattr__(name: str) -> Any:
    """Import the API's names when first used (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fairaudit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
