"""What the page's panels take from a tab, checked: texts, lists, numbers, file names, and who
may see a memory. Anything out of bounds is a :class:`Refusal` with a reason for the person, or
clamped, never an exception that would drop the tab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

import msgspec

from actors.web.hub import Client
from schemas import MemoryHit

MAX_TEXT = 4000
MAX_TAGS = 20
# What a person who is not an owner sees of the memories about nobody in particular: facts,
# documents and anchors an owner added, never summaries or turns of conversations they may not
# have been in.
SHARED_KINDS = frozenset({"fact", "document", "anchor"})


class Refusal(Exception):
    """A request the page will not send, with the reason for the person."""


def short_name(name: str, limit: int = 200) -> str:
    """A file name cut to ``limit`` characters, its suffix kept (the type is in it)."""
    if len(name) <= limit:
        return name
    suffix = PurePath(name).suffix[:20]
    return name[: limit - len(suffix)] + suffix


def line_parts(data: bytes, limit: int) -> Iterator[tuple[int, bytes]]:
    """``data`` in parts of at most ``limit`` bytes cut after a newline, each with the number of
    its first line (a single longer line is a part of its own, which the caller refuses)."""
    start, line = 0, 1
    while start < len(data):
        end = start + limit
        if end < len(data):
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= start else (data.find(b"\n", end) + 1 or len(data))
        part = data[start:end]
        yield line, part
        line += part.count(b"\n")
        start = end


def json_lines(data: bytes) -> bool:
    """Whether a history file is Hex's JSON Lines (its first line one whole object), which may
    go to memory in parts; an app's export (WhatsApp text, a Telegram or Discord JSON document)
    is read whole there."""
    start, first = 0, b""
    while start < len(data) and not first:  # the first line may be long (one large turn)
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        first, start = data[start:end].strip().removeprefix(b"\xef\xbb\xbf").strip(), end + 1
    return first.startswith(b"{") and first.endswith(b"}")


def visible(client: Client, h: MemoryHit) -> bool:
    """Whether this page's person may see the memory: an owner all, anyone else theirs and the
    shared kinds of general ones."""
    if client.owner or h.person_id == client.person_id:
        return True
    return h.person_id == "" and h.kind in SHARED_KINDS


def hit_fields(h: MemoryHit) -> dict[str, Any]:
    return msgspec.to_builtins(h)  # type: ignore[no-any-return]


def text_of(value: Any, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise Refusal(f"{what} is empty")
    if len(value) > MAX_TEXT:
        raise Refusal(f"{what} has {len(value)} characters; the limit is {MAX_TEXT}")
    return value.strip()


def strings(value: Any, limit: int = MAX_TAGS) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(dict.fromkeys(s.strip()[:100] for s in value if isinstance(s, str) and s.strip()))[
        :limit
    ]


def one_of(value: Any, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value)))
    except (TypeError, ValueError, OverflowError):  # 1e999 is inf
        return low


def unit(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise Refusal("importance is a number from 0 to 1") from None
    if not 0.0 <= x <= 1.0:
        raise Refusal("importance is a number from 0 to 1")
    return x
