"""The run core and the loop kinds that drive it."""
