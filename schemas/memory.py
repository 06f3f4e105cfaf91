"""Memory events: the brain's queries, manual memories, corrections and forgetting, and reports.

Queries and exports are request/response pairs (volatile, with a deadline: a lost one is a
timeout the caller handles). Everything that changes memory is durable, and each change is
answered with a durable ``memory.changed`` whose causation is the request's event id.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import Event

MemoryKind = Literal["fact", "summary", "anchor", "journal", "document"]


class MemoryQuery(Event, frozen=True, kw_only=True, tag="memory.query"):
    """Ask for the memories that fit a text; answered by a MemoryResult with the same correlation."""

    text: str
    person_id: str = ""
    channel: str = ""
    k: int = 5
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    since: float = 0.0  # unix seconds; 0 = no bound
    until: float = 0.0
    include_archived: bool = False


class MemoryHit(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    text: str
    score: float = 0.0
    kind: str = "fact"
    confidence: float = 1.0
    quote: str = ""
    person_id: str = ""
    source: str = ""
    tags: tuple[str, ...] = ()
    turn_ids: tuple[str, ...] = ()  # provenance: the turns (live event ids or imported ids) it came from
    document: str = ""
    created: float = 0.0
    hedge: bool = False  # low confidence: say "I think you mentioned…"


class MemoryResult(Event, frozen=True, kw_only=True, tag="memory.result"):
    hits: tuple[MemoryHit, ...] = ()
    error: str = ""


class MemoryAdd(Event, frozen=True, kw_only=True, tag="memory.add"):
    """A manual memory (``hexbus memory add``, /remember)."""

    text: str
    kind: MemoryKind = "fact"
    person_id: str = ""
    importance: float = 0.5
    tags: tuple[str, ...] = ()
    by: str = ""  # who asked


class MemoryEdit(Event, frozen=True, kw_only=True, tag="memory.edit"):
    """Change a memory's text, importance or tags; approve or reject a pending suggestion."""

    id: str
    text: str = ""
    importance: float = -1.0  # < 0: unchanged
    tags: tuple[str, ...] | None = None
    approve: bool | None = None  # True approves a suggestion; False rejects (deletes) it
    by: str = ""


class MemoryCorrect(Event, frozen=True, kw_only=True, tag="memory.correct"):
    """A person says a memory is wrong: lower its confidence, or remove it."""

    id: str
    note: str = ""
    remove: bool = False
    by: str = ""


class MemoryForget(Event, frozen=True, kw_only=True, tag="memory.forget"):
    """Forget by ids, by a query's matches, or everything about a person (owner only)."""

    ids: tuple[str, ...] = ()
    query: str = ""
    person_id: str = ""
    by: str = ""


class MemoryChanged(Event, frozen=True, kw_only=True, tag="memory.changed"):
    """What a change request did; ``causation`` is the request's event id.

    ``suggested``: a fact from a conversation waits for approval (``detail`` is its text).
    """

    action: Literal["added", "suggested", "edited", "approved", "rejected", "corrected", "forgotten", "refused"]
    ids: tuple[str, ...] = ()
    counts: dict[str, int] = {}
    detail: str = ""


class MemoryExport(Event, frozen=True, kw_only=True, tag="memory.export"):
    """Ask for every memory as JSON Lines; answered by MemoryExported with the lines in the blob."""

    include_archived: bool = True


class MemoryExported(Event, frozen=True, kw_only=True, tag="memory.exported"):
    count: int
    error: str = ""
