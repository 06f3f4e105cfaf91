"""Memory store test helpers: a fixed clock and memory / turn records with defaults."""

from __future__ import annotations

from actors.memory.store import Memory, StoredTurn

NOW = 1_000_000.0


def mem(id: str, **fields: object) -> Memory:
    fields.setdefault("text", f"text of {id}")
    return Memory(id=id, **fields)  # type: ignore[arg-type]


def turn(id: str, at: float, **fields: object) -> StoredTurn:
    fields.setdefault("conversation", "c1")
    fields.setdefault("text", f"turn {id}")
    return StoredTurn(id=id, at=at, **fields)  # type: ignore[arg-type]
