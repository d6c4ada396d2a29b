"""The torch-free floor: arithmetic, schedules, totals, windows, speed, formatting, message types."""
