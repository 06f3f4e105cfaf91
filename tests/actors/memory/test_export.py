"""The JSON Lines export, in-process."""

from __future__ import annotations

import json

from actors.memory.export import export_lines
from actors.memory.store import Memory
from tests.support.memory import Parts


def test_export_is_one_json_object_per_memory_without_embeddings(parts: Parts) -> None:
    parts.store.memories.add(
        Memory(id="m1", text="likes tea", tags=("a",), embedding=(1.0, 0.0), diary="x.md")
    )
    parts.store.memories.add(Memory(id="m2", text="met at the lake", archived=True))
    count, lines = export_lines(parts.store, include_archived=True)
    rows = [json.loads(line) for line in lines.decode().splitlines()]
    assert count == 2 and [r["id"] for r in rows] == ["m1", "m2"]
    assert rows[0]["tags"] == ["a"] and "embedding" not in rows[0]
    assert rows[0]["journal"] == "x.md"  # the export keeps its first field names
    assert lines.decode().splitlines()[0] == json.dumps(rows[0], sort_keys=True)


def test_archived_memories_are_left_out_unless_asked(parts: Parts) -> None:
    parts.store.memories.add(Memory(id="m1", text="likes tea"))
    parts.store.memories.add(Memory(id="m2", text="met at the lake", archived=True))
    count, lines = export_lines(parts.store, include_archived=False)
    assert count == 1 and json.loads(lines)["id"] == "m1"
    assert export_lines(parts.bank.store, include_archived=True)[0] == 2
