"""A history file imported from the page travels to memory in parts cut at line ends."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from actors.memory.exports import detect
from actors.web.checks import json_lines, line_parts

lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=40)


@given(lines, st.booleans(), st.integers(min_value=1, max_value=64))
def test_parts_are_the_file_cut_after_newlines_each_numbered_by_its_first_line(
    rows: list[bytes], trailing: bool, limit: int
) -> None:
    data = b"\n".join(rows) + (b"\n" if trailing and rows else b"")
    parts = list(line_parts(data, limit))
    assert b"".join(p for _, p in parts) == data  # nothing lost, nothing doubled
    expected_line = 1
    for i, (first_line, part) in enumerate(parts):
        assert first_line == expected_line
        if i < len(parts) - 1:
            assert part.endswith(b"\n")  # a line is never split between two parts
        # Within the limit, unless one line alone is longer.
        assert len(part) <= limit or part.count(b"\n") <= 1
        expected_line += part.count(b"\n")


def test_only_json_lines_go_in_parts_and_memory_reads_each_kind_the_same_way() -> None:
    """An app's export is one document (or messages over several lines): the page sends it to
    memory whole, and memory's reader agrees on which files are JSON Lines."""
    turn = json.dumps(
        {"id": "1", "conversation": "c", "speaker": "A", "text": "hi", "timestamp": 0}
    )
    samples = {
        "jsonl": f"\ufeff\n{turn}\n{turn}\n".encode(),
        "jsonl-long-first-line": (turn.replace('"hi"', json.dumps("话" * 30_000)) + "\n").encode(),
        "whatsapp": "12/24/23, 9:05\u202fPM - Ana: hi\nsecond line\n".encode(),
        "discord": json.dumps(
            {"guild": {}, "channel": {"id": "1"}, "messages": []}, indent=2
        ).encode(),
        "telegram": json.dumps(
            {"name": "Ana", "type": "personal_chat", "messages": []}, indent=1
        ).encode(),
    }
    for kind, raw in samples.items():
        assert detect(raw) == kind.split("-")[0]
        assert json_lines(raw) == kind.startswith("jsonl"), kind
