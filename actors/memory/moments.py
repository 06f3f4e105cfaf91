"""A turn as the moment it was: who said it, to whom, and what was said just before.

An episodic memory keeps the person's own words as its text (what the brain reads), but
is embedded and keyword-indexed as its moment (``Memory.context``)::

    Ana to Tomás: yep, starting Tuesday!
    Tomás: so did you sign up for the pottery thing in the end?

so a short reply is found through the question it answers, and a question that names
who said something finds it by name. The turn's own words come first: a long moment is
cut by the embedding model at its end, never in the turn. When it was said is not in the
text: the date is the memory's ``created``, which time words in a query are ranked by
(:mod:`actors.memory.when`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from actors.memory.store import StoredTurn

BEFORE: Final = 2  # turns before the one remembered, as its context
CHAT_GAP_S: Final = 6 * 3600.0  # turns further apart than this are another chat: no context
NEIGHBOUR_CHARS: Final = 240  # of each earlier turn; the turn itself is never cut


def _clip(text: str, limit: int = NEIGHBOUR_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def moment(turn: StoredTurn, before: Sequence[StoredTurn]) -> str:
    """The text indexed for ``turn``; ``before`` are earlier turns of its conversation, oldest
    first (only the last :data:`BEFORE` within :data:`CHAT_GAP_S` are used)."""
    near = [t for t in before if 0.0 <= turn.at - t.at <= CHAT_GAP_S and t.id != turn.id]
    near = near[-BEFORE:]
    to = next((t.speaker for t in reversed(near) if t.speaker and t.speaker != turn.speaker), "")
    head = f"{turn.speaker} to {to}" if turn.speaker and to else turn.speaker
    lines = [f"{head}: {turn.text}" if head else turn.text]
    lines += [f"{t.speaker}: {_clip(t.text)}" if t.speaker else _clip(t.text) for t in near]
    return "\n".join(lines)


def moments(turns: Iterable[StoredTurn], earlier: Sequence[StoredTurn] = ()) -> dict[str, str]:
    """Each turn's moment, by id; ``turns`` are one conversation's in time order, ``earlier``
    its turns stored before them (oldest first)."""
    seen = list(earlier[-BEFORE:])
    out: dict[str, str] = {}
    for turn in turns:
        out[turn.id] = moment(turn, seen)
        seen = [*seen[-(BEFORE - 1) :], turn] if BEFORE > 1 else [turn]
    return out
