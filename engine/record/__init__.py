"""The run directory: identity and status, event log, loss archive, checkpoints, export."""
