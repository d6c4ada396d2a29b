"""Viewers' side of a run: the in-process channel, the control socket's server, client and wire format."""
