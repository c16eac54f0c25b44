"""Helpers shared by the tests (importable as `_helpers`: pyproject puts tests/ on sys.path).

paths: the repository's folders; cli: running the Typer app; dicom and tables: small inputs
written by the tests; results: a hand-built results.json; benchmarks: benchmarks/NAME.py as
a module. Fixtures built on them are in tests/conftest.py.
"""
