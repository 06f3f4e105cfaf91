"""A history file imported from the page travels to memory in parts cut at line ends."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors.web.checks import line_parts

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
