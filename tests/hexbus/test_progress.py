"""The progress line long commands show: on a terminal, redrawn in place; piped, plain lines."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from hexbus.progress import Progress
from tests.support.clock import Clock


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_progress_is_a_plain_line_every_few_seconds_and_one_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(700, "turns", what="importing chat.jsonl:", out=out, clock=clock)
    for _ in range(14):  # 50 turns a second, 1 s apart
        clock.now += 1.0
        progress.advance(50)
    progress.done()
    lines = out.getvalue().splitlines()
    assert lines[0] == "importing chat.jsonl: 50/700 turns (7%), 50.0 turns/s, about 13 s left"
    assert len(lines) == 1 + 6 + 1  # the first, then one every 2 s, then the end
    assert lines[-1] == "importing chat.jsonl: 700/700 turns (100%), 50.0 turns/s"
    assert "\r" not in out.getvalue()


def test_on_a_terminal_one_line_is_redrawn_with_a_bar() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress(10, "chunks", out=out, clock=clock)
    for _ in range(10):
        clock.now += 0.5
        progress.advance()
    progress.done()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    last = text.rstrip("\n").rsplit("\r", 1)[-1]
    assert last.startswith("[" + "#" * 24 + "] 10/10 chunks (100%), 2.0 chunks/s")


@given(st.integers(0, 10_000), st.lists(st.integers(0, 500), max_size=40))
def test_the_count_never_passes_the_total_and_the_end_says_all(
    total: int, steps: list[int]
) -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(total, "turns", out=out, clock=clock)
    for step in steps:
        clock.now += 0.3
        progress.advance(step)
        assert progress.count <= total or total == 0
    progress.count = total
    progress.done()
    assert out.getvalue().splitlines()[-1].startswith(f"{total}/{total} turns (100%)")
