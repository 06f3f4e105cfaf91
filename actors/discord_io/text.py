"""Discord message text: splitting a reply into messages of at most 2,000 characters.

Discord refuses a message over 2,000 characters. A long reply is split where a reader would
split it (a blank line, then a line end, then a sentence end, then a space), and a fenced code
block is never cut when it fits in one message: the split moves before it. A block longer than
a whole message is cut at a line end, its fence closed at the end of one part and reopened
with the same language in the next, so every part renders as code.
"""

from __future__ import annotations

import re

__all__ = ["LIMIT", "split_message", "strip_mention"]

LIMIT = 2000
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)(.*)$")
_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", "; ", ", ", " ")


def _fences(text: str) -> list[tuple[int, int, str, str]]:
    """The fenced blocks of ``text`` as (start, end, fence, info): end is past the closing line."""
    blocks: list[tuple[int, int, str, str]] = []
    at, opened = 0, None
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line.rstrip("\n"))
        if match:
            if opened is None:
                opened = (at, match.group(1), match.group(2).strip())
            elif match.group(1).startswith(opened[1]) and not match.group(2).strip():
                blocks.append((opened[0], at + len(line), opened[1], opened[2]))
                opened = None
        at += len(line)
    if opened is not None:  # an unclosed fence runs to the end, as Discord renders it
        blocks.append((opened[0], len(text), opened[1], opened[2]))
    return blocks


def _cut(text: str, limit: int) -> int:
    """Where to end the first part of ``text`` (≤ limit), at the most natural break."""
    window = text[:limit]
    for mark in _BREAKS:
        found = window.rfind(mark)
        if found > limit // 4:
            return found + len(mark)
    return limit


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    """``text`` as Discord messages of at most ``limit`` characters each (none empty)."""
    if limit < 40:
        raise ValueError(f"limit {limit} is too small to hold a code fence and some text")
    parts: list[str] = []
    rest = text.strip()
    reopen = ""  # a fence to reopen at the start of the next part
    while rest:
        rest = reopen + rest
        reopen = ""
        if len(rest) <= limit:
            parts.append(rest)
            break
        cut = _cut(rest, limit)
        inside = next(((s, e, f, i) for s, e, f, i in _fences(rest) if s < cut < e), None)
        if inside is not None:
            start, end, fence, info = inside
            if end - start <= limit:
                cut = (
                    start if start > 0 else end
                )  # the whole block in one message: break before (or after) it
            else:
                # Longer than a message: cut inside at a line end, close the fence here and reopen it
                # in the next part. (An opening line too long to leave room gets a plain cut.)
                opener_end = rest.find("\n", start) + 1 or len(rest)
                closing = "\n" + fence
                room = limit - len(closing)
                if opener_end < room:
                    line_end = rest.rfind("\n", opener_end, room)
                    cut = line_end + 1 if line_end >= opener_end else room
                    parts.append(rest[:cut].rstrip("\n") + closing)
                    rest = rest[cut:]
                    reopen = f"{fence}{info}\n"
                    continue
                cut = limit
        part, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if part:
            parts.append(part)
    return parts


def strip_mention(text: str, user_id: int) -> str:
    """The message without the mentions of Hex (``<@id>`` or ``<@!id>``), tidied."""
    return re.sub(rf"<@!?{user_id}>", "", text).strip()
