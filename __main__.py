"""`python -m trainmon ...` is the `trainmon` command (what torchrun runs on every rank: `-m trainmon run job.py`)."""

from trainmon.cli.main import main

main()
