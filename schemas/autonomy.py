"""Autonomy events: what Hex holds back from saying first, and why (``hexbus autonomy why``).

What she does say first travels as a ``chat.message`` whose ``initiative`` names the reason:
the brain writes it, every platform delivers it, memory keeps it as any turn of hers.
"""

from __future__ import annotations

import msgspec

from schemas.base import Event


class DiscordDm(Event, frozen=True, kw_only=True, tag="discord.dm"):
    """Ask the Discord actor for the DM channel with a person (``discord:<user id>``), opening it
    if needed: where Hex writes to them first. Answered by :class:`DiscordDmChannel`."""

    person_id: str


class DiscordDmChannel(Event, frozen=True, kw_only=True, tag="discord.dm.channel"):
    person_id: str
    channel: str = ""  # the DM channel's id ("" when it could not be opened)
    error: str = ""
    call: str = ""  # the voice conversation Hex and they are both in now ("" when none)


class DiscordPresence(Event, frozen=True, kw_only=True, tag="discord.presence"):
    """A member's online status changed (with the Discord actor's ``presence`` on)."""

    person_id: str
    status: str  # "online", "idle", "dnd", "offline"


class AutonomyWhy(Event, frozen=True, kw_only=True, tag="autonomy.why"):
    """Ask for an :class:`AutonomyReport` (one person's, or everyone's with ``person_id`` "")."""

    person_id: str = ""


class WhyLine(msgspec.Struct, frozen=True, kw_only=True):
    """One candidate message: waiting (and why it has not gone), or dropped (and why)."""

    candidate: str
    person_id: str
    kind: str
    reason: str  # why she would say it
    verdict: str  # why it has not gone: "quiet hours until 08:00"; "" once sent
    at: float = 0.0  # when the verdict was reached
    until: float = 0.0  # when it may change (0: when something else does)
    dropped: bool = False


class AutonomyReport(Event, frozen=True, kw_only=True, tag="autonomy.report"):
    now: float  # her clock (the real one, unless a rehearsal runs it ahead)
    lines: tuple[WhyLine, ...] = ()
    sent: tuple[WhyLine, ...] = ()  # the latest she said first, newest first
