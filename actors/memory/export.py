"""Every memory out as JSON Lines, for ``hexbus memory export``."""

from __future__ import annotations

import json

from actors.memory.store import MemoryStore


def export_lines(store: MemoryStore, *, include_archived: bool) -> tuple[int, bytes]:
    """The memories (without embeddings) as JSON Lines, keys sorted, by label; and how many.

    Archived memories only with ``include_archived``. Blocks.
    """
    rows = [r for r in store.memories.export() if include_archived or not r.get("archived")]
    return len(rows), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
