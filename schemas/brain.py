"""Brain control events: persona versions and quiet mode."""

from __future__ import annotations

from typing import Literal

from schemas.base import Event


class PersonaRollback(Event, frozen=True, kw_only=True, tag="brain.persona.rollback"):
    """Make an earlier persona version the active one (``hexbus persona rollback N``)."""

    version: int


class PersonaChanged(Event, frozen=True, kw_only=True, tag="brain.persona.changed"):
    """The active persona version changed (a new document, or a rollback)."""

    version: int
    note: str = ""
    error: str = ""  # set when a rollback was refused; version is then the one still active


class QuietMode(Event, frozen=True, kw_only=True, tag="brain.quiet"):
    """Answer only when directly addressed, in one channel or for one person, until ``until`` (unix s; 0 ends it)."""

    scope: Literal["person", "channel"]
    target: str
    until: float = 0.0
