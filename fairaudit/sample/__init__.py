"""Synthetic cohorts for demos, tests and benchmarks (no real patient data anywhere)."""

from fairaudit.sample.predictions import synthetic_predictions, write_sample_predictions

__all__ = ["synthetic_predictions", "write_sample_predictions"]
