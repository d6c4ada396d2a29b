"""The base of every message (`engine.core.messages` and the modules beside it that define more)."""

from __future__ import annotations

import msgspec


class Message(msgspec.Struct, frozen=True, tag=True):
    """Base of every message: tagged with its class name on the wire (`{"type": "Paused", ...}`)."""
