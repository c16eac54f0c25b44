"""A fast subset of benchmarks/gate_simulation.py: the gate gets stricter, not looser, with less
data (docs/ci.md). Few cohorts per cell, so the assertions have generous slack."""

from __future__ import annotations

from types import ModuleType

from _helpers.benchmarks import load


def _bench() -> ModuleType:
    return load("gate_simulation")


def test_harmful_gap_rarely_passes_and_no_gap_passes_more_with_more_data() -> None:
    bench = _bench()
    reps = 8
    rates = bench.pass_rates([30, 240], gaps=[0.15], reps=reps, bootstrap=100, seed=1)
    for decide in bench.DECIDES:
        for n in (30, 240):
            # Target 0.10; with 8 cohorts allow up to 2 passes.
            assert rates[(decide, 0.15, n)] <= 0.25, (decide, n, rates)
    rates = bench.pass_rates([60, 1920], gaps=[0.0], reps=reps, bootstrap=100, seed=2)
    for decide in bench.DECIDES:
        assert rates[(decide, 0.0, 1920)] >= rates[(decide, 0.0, 60)] - 0.25, (decide, rates)
    # About 960 positives per group: precise enough for a 0.05 bound under no_evidence_of_harm.
    assert rates[("no_evidence_of_harm", 0.0, 1920)] >= 0.5, rates
