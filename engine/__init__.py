"""trainmon's engine: the training loop, its arithmetic, jobs and telemetry — usable without a terminal.

Never imports textual (checked by tests/test_boundaries.py and import-linter).
"""
