"""Brain events: persona versions, quiet mode, and work other actors ask of the brain's backend."""

from __future__ import annotations

from typing import Literal

from schemas.base import Event
from schemas.chat import Fact


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


class BrainTask(Event, frozen=True, kw_only=True, tag="brain.task"):
    """Work for the brain's language model, asked by an actor that has none (the memory actor).

    ``summarize``: ``text`` is a transcript; the answer holds a short summary and the lasting facts
    about the people in it. ``contradiction``: does ``other`` (a newer fact) contradict ``text``
    (an older one)? Answered by a BrainTaskResult with the same correlation; people's replies go
    first, so a caller gives it a generous deadline and tries again later on a timeout.
    """

    kind: Literal["summarize", "contradiction"]
    text: str
    other: str = ""


class BrainTaskResult(Event, frozen=True, kw_only=True, tag="brain.task.result"):
    summary: str = ""
    facts: tuple[Fact, ...] = ()
    contradicts: bool = False
    error: str = ""  # the backend failed; nothing else is set
