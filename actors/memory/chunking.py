"""Cutting text into chunks of about a target size, for the document reader.

Prose is cut at paragraphs, then sentences, then words, and each chunk carries the end
of the one before it in; a Markdown chunk begins with the heading it sits under. Units
(a line, a row, a value) are packed whole. Locations (line, page, row numbers) travel
with every unit so each chunk can say where it came from.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, NamedTuple

_HEADING_CHARS: Final = 200  # a longer "#" line is a paragraph, not a heading
# . ! ? … and the CJK full stops, then any closing quotes or brackets, then a space
_SENTENCE_END: Final = re.compile(r"[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019\u00bb)\]]*(?=\s)")
_SPACE: Final = re.compile(r"\s")
_HEADING: Final = re.compile(r"#{1,6}(?:\s|$)")


class Unit(NamedTuple):
    """A piece of text that is never cut further, and where it came from."""

    text: str
    first: int  # line, page, row or value number of its start
    last: int
    heading: str = ""  # the Markdown heading it sits under
    is_heading: bool = False
    continues: bool = False  # a later piece of a paragraph or value cut for size


def _cuts(text: str, budget: int) -> Iterator[tuple[int, int]]:
    """Spans of at most ``budget`` characters: cut at a sentence end, else a space, else anywhere."""
    start, end_of_text = 0, len(text)
    while start < end_of_text:
        if end_of_text - start <= budget:
            yield start, end_of_text
            return
        # One past the budget: a space there is a fine place to cut.
        window = text[start : start + budget + 1]
        end = max((m.end() for m in _SENTENCE_END.finditer(window)), default=0)
        if end < max(1, budget // 2):  # no sentence ends late enough: fill up to a word's end
            end = max((m.start() for m in _SPACE.finditer(window, 1)), default=0) or budget
        yield start, start + end
        start += end
        while start < end_of_text and text[start].isspace():
            start += 1


def split(lines: Sequence[tuple[int, str]], budget: int, heading: str = "") -> Iterator[Unit]:
    """One block of (location, line) as units of at most ``budget`` characters."""
    text = "\n".join(line for _, line in lines)
    starts = list(itertools.accumulate((len(line) + 1 for _, line in lines[:-1]), initial=0))

    def where(offset: int) -> int:
        return lines[bisect.bisect_right(starts, offset) - 1][0]

    for n, (start, end) in enumerate(_cuts(text, max(1, budget))):
        if piece := text[start:end].strip():
            yield Unit(piece, where(start), where(end - 1), heading, continues=n > 0)


def tail(text: str, size: int) -> str:
    """The end of ``text`` in at most ``size`` characters, starting at a word."""
    if size <= 0:
        return ""
    if len(text) <= size:
        return text
    start = len(text) - size
    if not text[start - 1].isspace():
        if (space := _SPACE.search(text, start)) is None:
            return ""
        start = space.end()
    return text[start:].strip()


def _groups(units: Iterable[Unit]) -> Iterator[list[Unit]]:
    """Units that go into one chunk together: headings with the unit after them."""
    group: list[Unit] = []
    for unit in units:
        group.append(unit)
        if not unit.is_heading:
            yield group
            group = []
    if group:
        yield group


def pack(
    units: Iterable[Unit], chunk_chars: int, overlap_chars: int, sep: str
) -> list[tuple[str, int, int]]:
    """Units packed into chunks of about ``chunk_chars``: (text, first location, last location)."""
    chunks: list[tuple[str, int, int]] = []
    head = body = ""  # head: the heading a chunk starting mid-section repeats
    first = last = 0
    for group in _groups(units):
        lead = group[0]
        joined = "".join(
            (" " if u.continues else sep) + u.text if i else u.text for i, u in enumerate(group)
        )
        joint = " " if lead.continues else sep
        if body and len(head) + len(body) + len(joint) + len(joined) <= chunk_chars:
            body += joint + joined
            last = max(last, group[-1].last)
            continue
        if body:
            chunks.append((head + body, first, last))
        head = lead.heading + sep if lead.heading and not lead.is_heading else ""
        carried = ""
        if body and not lead.is_heading:  # a new section starts clean
            carried = tail(
                body, min(overlap_chars, chunk_chars - len(head) - len(joint) - len(joined))
            )
        body = carried + joint + joined if carried else joined
        first, last = lead.first, group[-1].last
    if body:
        chunks.append((head + body, first, last))
    return chunks


def _blocks(
    lines: Iterable[tuple[int, str]], markdown: bool
) -> Iterator[tuple[list[tuple[int, str]], bool]]:
    """Paragraphs (runs of non-blank lines) and, in Markdown, each heading line: (lines, is_heading)."""
    block: list[tuple[int, str]] = []
    fence = ""  # the marker of the open Markdown code fence: "#" there is code, not a heading
    for loc, line in lines:
        if markdown and line.startswith(("```", "~~~")):
            fence = "" if fence and line.startswith(fence) else fence or line[:3]
        elif markdown and not fence and _HEADING.match(line) and len(line) <= _HEADING_CHARS:
            if block:
                yield block, False
                block = []
            yield [(loc, line)], True
            continue
        if line:
            block.append((loc, line))
        elif block:
            yield block, False
            block = []
    if block:
        yield block, False


def prose(
    lines: Iterable[tuple[int, str]], chunk_chars: int, overlap_chars: int, markdown: bool
) -> list[tuple[str, int, int]]:
    """Cleaned (location, line) of prose as chunks; a blank line ends a paragraph."""

    def units() -> Iterator[Unit]:
        heading = ""
        for block, is_heading in _blocks(lines, markdown):
            if is_heading:
                loc, heading = block[0]
                yield Unit(heading, loc, loc, heading, is_heading=True)
                continue
            # Room for the carried overlap, and for the heading a chunk starting here repeats.
            room = chunk_chars - overlap_chars - 2 - len(heading) - 2 * bool(heading)
            yield from split(block, max(room, chunk_chars // 2), heading)

    return pack(units(), chunk_chars, overlap_chars, "\n\n")
