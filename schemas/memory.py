"""Memory requests the brain makes (the memory actor answers them; see its issue)."""

from __future__ import annotations

import msgspec

from schemas.base import Event


class MemoryQuery(Event, frozen=True, kw_only=True, tag="memory.query"):
    """Ask for the memories that fit a message; answered by a MemoryResult with the same correlation."""

    text: str
    person_id: str = ""
    channel: str = ""
    k: int = 5
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


class MemoryHit(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    text: str
    score: float = 0.0
    kind: str = "fact"
    confidence: float = 1.0
    quote: str = ""


class MemoryResult(Event, frozen=True, kw_only=True, tag="memory.result"):
    hits: tuple[MemoryHit, ...] = ()
