"""The base every bus event derives from."""

from __future__ import annotations

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """One event on the bus. Subclasses set an explicit dotted ``tag``.

    The tag is also the first part of the event's topic; a routing key may
    follow it (``audio.frame.discord.1234``).
    """
