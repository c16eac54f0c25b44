"""The command runners: each reads its inputs, builds the cohort, runs the statistics and
writes the outputs. The CLI (fairaudit.cli) and the Python API (fairaudit.api) call these."""
