"""`trainmon lesson` in a terminal: one large focus area stepping a real run stop by stop."""
