"""Statistics engine: metrics, bootstrap intervals, tests and corrections.

Never imports torch or pydicom, so a predictions-only audit starts fast.
"""

from fairaudit.stats._audit import CI_METHODS, CORRECTIONS, AuditConfig, run_audit
from fairaudit.stats._metrics import METRICS, RATE_METRICS, SCORE_METRICS
from fairaudit.stats.result import (
    AttributeResult,
    AuditResult,
    Comparison,
    Estimate,
    GroupResult,
    MetricSummary,
    Omnibus,
)

__all__ = [
    "CI_METHODS",
    "CORRECTIONS",
    "METRICS",
    "RATE_METRICS",
    "SCORE_METRICS",
    "AttributeResult",
    "AuditConfig",
    "AuditResult",
    "Comparison",
    "Estimate",
    "GroupResult",
    "MetricSummary",
    "Omnibus",
    "run_audit",
]
