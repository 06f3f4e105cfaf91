"""Build the prompt from sections, each held to a token budget counted with the backend's tokenizer.

Sections, in order: the persona (with relationship guidance), the person's
profile snapshot, retrieved memories, a fresh perception observation, the
rolling summary of older turns, then recent turns and the new message. A
section over budget loses whole items (the least relevant memory, the oldest
turn), never half of one; turns that no longer fit are left to the rolling
summary, which the brain updates after replying.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from actors.brain.backends import Turn
from schemas import MemoryHit


class Budgets(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tokens per section; ``reply`` is the most a reply may take."""

    persona: int = 600
    profile: int = 100
    memories: int = 200
    perception: int = 60
    summary: int = 150
    turns: int = 600
    reply: int = 200

    def total(self) -> int:
        return (
            self.persona
            + self.profile
            + self.memories
            + self.perception
            + self.summary
            + self.turns
            + self.reply
        )


class TurnRecord(msgspec.Struct, kw_only=True):
    """One turn of a conversation as the brain keeps it."""

    role: str  # "user" or "assistant"
    text: str
    person_id: str = ""
    name: str = ""
    event_id: str = ""
    at: float = 0.0
    cancelled: bool = False


def length_hint(user_text: str, cap: int) -> tuple[str, int]:
    """How long the reply should be, from how long the message is: (instruction, max tokens)."""
    words = len(user_text.split())
    if words <= 6:
        return "Reply in one or two short sentences.", min(cap, 60)
    if words <= 30:
        return "Reply in two to four sentences.", min(cap, 120)
    return "Reply in a short paragraph at most.", cap


def _fit(text: str, budget: int, count: Callable[[str], int]) -> str:
    """Whole lines of ``text`` from the top while they fit ``budget`` tokens."""
    if count(text) <= budget:
        return text
    kept: list[str] = []
    used = 0
    for line in text.splitlines():
        cost = count(line) + 1
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    return "\n".join(kept)


def _fit_persona(text: str, budget: int, count: Callable[[str], int]) -> str:
    """The persona within ``budget``: its first line (who she is) and its last lines (this person,
    this moment, this turn) stay; the descriptive lines between go first, oldest first."""
    lines = text.splitlines()
    while len(lines) > 2 and count("\n".join(lines)) > budget:
        del lines[1]
    return "\n".join(lines)


def memory_lines(hits: Sequence[MemoryHit], budget: int, count: Callable[[str], int]) -> str:
    """Best first; a low-confidence memory is marked so the reply can hedge."""
    lines: list[str] = []
    used = 0
    for hit in sorted(hits, key=lambda h: -h.score):
        hedge = " (not sure about this one)" if hit.hedge or hit.confidence < 0.5 else ""
        line = f"- {hit.text}{hedge}"
        cost = count(line) + 1
        if used + cost > budget:
            continue  # a shorter, less relevant one may still fit
        lines.append(line)
        used += cost
    return "\n".join(lines)


def recent_turns(
    turns: Sequence[TurnRecord], budget: int, count: Callable[[str], int]
) -> list[TurnRecord]:
    """The newest whole turns that fit ``budget``, in order."""
    kept: list[TurnRecord] = []
    used = 0
    for turn in reversed(turns):
        cost = count(turn.text) + 4
        if used + cost > budget:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    return kept


def build(
    *,
    persona: str,
    profile: str,
    memories: Sequence[MemoryHit],
    observation: str,
    summary: str,
    turns: Sequence[TurnRecord],
    message: str,
    speaker: str,
    budgets: Budgets,
    count: Callable[[str], int],
) -> tuple[list[Turn], int]:
    """The chat turns for the backend and the reply's token cap."""
    hint, max_tokens = length_hint(message, budgets.reply)
    system = [_fit_persona(persona, budgets.persona, count)]
    if profile:
        system.append(
            "What you know about " + speaker + ":\n" + _fit(profile, budgets.profile, count)
        )
    remembered = memory_lines(memories, budgets.memories, count)
    if remembered:
        system.append("Things you remember (use them naturally, never list them):\n" + remembered)
    if observation:
        system.append("What you see right now: " + _fit(observation, budgets.perception, count))
    if summary:
        system.append("Earlier in this conversation: " + _fit(summary, budgets.summary, count))
    system.append(hint)
    out = [Turn("system", "\n\n".join(system))]
    for turn in recent_turns(turns, budgets.turns, count):
        out.append(Turn("assistant" if turn.role == "assistant" else "user", turn.text))
    out.append(Turn("user", message))
    return out, max_tokens
