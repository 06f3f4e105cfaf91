"""Build the prompt from sections, each held to a token budget counted with the backend's tokenizer.

The prompt is laid out so that what changes every message comes last. A local
model evaluates only what follows the longest prefix its context already holds,
so anything that changes early (a denial drawn at random, the memories this line
recalls) would make it read the whole conversation again on every message:
with 600 tokens of turns that was seconds per reply on two cores. In order:

1. a system turn with what holds for the conversation: the persona's rules with
   this person's relationship guidance, the person's profile, the rolling
   summary of older turns;
2. the recent turns, whose oldest kept one moves only in steps of a third of
   their budget (:func:`recent_turns`), so the history is a stable prefix too;
3. a system turn for this message: the persona's lines for this turn (a denial
   or none, care owed, quiet, crisis, the moment), retrieved memories, a fresh
   perception observation, plugin notes, the length hint;
4. the new message.

A section over budget loses whole items (the least relevant memory, the oldest
turn), never half of one; turns that no longer fit are left to the rolling
summary, which the brain updates after replying.

:func:`persona_rules` and :func:`turn_rules` render the persona's two parts
(:func:`system_prompt` is both, as one text); :func:`compose` is the whole
prompt for one chat message.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate

import msgspec

from actors.brain.backends import ChatTurn
from actors.brain.persona import Moment, Persona
from actors.brain.rules import (
    Relationship,
    care_owed,
    is_crisis,
    may_deny,
    moment_of,
    phase_of,
    wants_quiet,
)
from actors.brain.templates import SHIPPED, Templates, render
from schemas import ChatMessage, MemoryHit, MemoryResult

# Words in the persona part of the prompt at default settings: small models get 2048 tokens.
PROMPT_WORD_BUDGET = 350


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


def length_hint(user_text: str, cap: int, templates: Templates = SHIPPED) -> tuple[str, int]:
    """How long the reply should be, from how long the message is: (instruction, max tokens)."""
    words = len(user_text.split())
    if words <= 6:
        return render(templates.short), min(cap, 60)
    if words <= 30:
        return render(templates.medium), min(cap, 120)
    return render(templates.long), cap


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


def fitting_memories(
    hits: Sequence[MemoryHit], budget: int, count: Callable[[str], int]
) -> list[tuple[MemoryHit, str]]:
    """The memories that fit the budget, best first, each with its prompt line; a
    low-confidence memory is marked so the reply can hedge."""
    kept: list[tuple[MemoryHit, str]] = []
    used = 0
    for hit in sorted(hits, key=lambda h: -h.score):
        hedge = " (not sure about this one)" if hit.hedge or hit.confidence < 0.5 else ""
        line = f"- {hit.text}{hedge}"
        cost = count(line) + 1
        if used + cost > budget:
            continue  # a shorter, less relevant one may still fit
        kept.append((hit, line))
        used += cost
    return kept


def recall(
    result: MemoryResult, answering: set[str], budget: int, count: Callable[[str], int]
) -> tuple[MemoryResult, tuple[str, ...]]:
    """Memory's answer without the lines being answered (memory keeps each line as a turn as
    it arrives: they are the conversation, not something remembered), and the ids of the
    memories that fit the prompt."""
    if any(answering.intersection(h.turn_ids) for h in result.hits):
        hits = tuple(h for h in result.hits if not answering.intersection(h.turn_ids))
        result = msgspec.structs.replace(result, hits=hits)
    return result, tuple(h.id for h, _ in fitting_memories(result.hits, budget, count))


def memory_lines(hits: Sequence[MemoryHit], budget: int, count: Callable[[str], int]) -> str:
    """The memory section's lines, best first."""
    return "\n".join(line for _, line in fitting_memories(hits, budget, count))


def recent_turns(
    turns: Sequence[TurnRecord], budget: int, count: Callable[[str], int]
) -> list[TurnRecord]:
    """The newest whole turns that fit ``budget``, in order, starting at a step boundary.

    The oldest kept turn is the first to begin at or past a multiple of a third of the
    budget (in tokens from the first turn) from which the rest fits. It moves once a third
    of the budget of new turns has come, not at every message: between moves the turns are
    the same prefix of the prompt, which the model does not evaluate again. The price is
    about a third of the budget left unused just after a move.
    """
    before = list(accumulate((count(turn.text) + 4 for turn in turns), initial=0))
    total, step = before[-1], max(1, budget // 3)  # before[i]: tokens of turns[:i]
    boundary = 0
    while True:
        start = min(bisect_left(before, boundary), len(turns))
        if total - before[start] <= budget:
            return list(turns[start:])
        boundary += step


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
    notes: str = "",
    now: str = "",
    templates: Templates = SHIPPED,
) -> tuple[list[ChatTurn], int]:
    """The chat turns for the backend and the reply's token cap; the words around each section
    are ``templates``'.

    ``persona`` is what holds for the conversation and ``now`` the persona's lines for this
    message (see the module's docstring for the order); the two share the persona's budget,
    ``now`` first.
    """
    t = templates
    hint, max_tokens = length_hint(message, budgets.reply, t)
    system = [_fit_persona(persona, budgets.persona - (count(now) if now else 0), count)]
    if profile:
        head = render(t.profile, speaker=speaker)
        system.append(head + "\n" + _fit(profile, budgets.profile, count))
    if summary:
        system.append(render(t.summary) + " " + _fit(summary, budgets.summary, count))
    out = [ChatTurn("system", "\n\n".join(system))]
    for turn in recent_turns(turns, budgets.turns, count):
        out.append(ChatTurn("assistant" if turn.role == "assistant" else "user", turn.text))
    this_turn = [now] if now else []
    remembered = memory_lines(memories, budgets.memories, count)
    if remembered:
        this_turn.append(render(t.memories) + "\n" + remembered)
    if observation:
        this_turn.append(render(t.observation) + " " + _fit(observation, budgets.perception, count))
    if notes:
        # Her plugins' lines: code she wrote and her owner approved, never the person's words.
        this_turn.append(render(t.notes) + " " + _fit(notes, budgets.perception, count))
    this_turn.append(hint)
    out.append(ChatTurn("system", "\n\n".join(this_turn)))
    out.append(ChatTurn("user", message))
    return out, max_tokens


def compose(
    message: ChatMessage,
    *,
    persona: Persona,
    rel: Relationship,
    rng: random.Random,
    profile: str,
    memories: Sequence[MemoryHit],
    observation: str,
    summary: str,
    turns: Sequence[TurnRecord],
    budgets: Budgets,
    count: Callable[[str], int],
    notes: str = "",
    templates: Templates = SHIPPED,
) -> tuple[list[ChatTurn], int]:
    """The chat turns that answer ``message`` and the reply's token cap: the persona's rules for
    this person and this moment (a denial drawn from ``rng``, care owed, quiet, crisis), then
    every section within its budget. Hex's own initiative gets the reason she speaks first in
    place of the person's words (:func:`opening`)."""
    text = message.text
    rules = persona_rules(persona, rel)
    if message.initiative:
        return build(
            persona=rules,
            now=turn_rules(persona, deny_now=False, care_owed=care_owed(rel, persona)),
            profile=profile,
            memories=memories,
            observation=observation,
            notes=notes,
            summary=summary,
            turns=turns,
            message=opening(message, persona.name, templates),
            speaker=message.display_name or message.person_id,
            budgets=budgets,
            count=count,
            templates=templates,
        )
    now = turn_rules(
        persona,
        deny_now=may_deny(rel, text, persona, rng),
        care_owed=care_owed(rel, persona),
        quiet=wants_quiet(text, persona),
        crisis=is_crisis(text, persona),
        moment=moment_of(text, persona),
    )
    return build(
        persona=rules,
        now=now,
        profile=profile,
        memories=memories,
        observation=observation,
        notes=notes,
        summary=summary,
        turns=turns,
        message=text,
        speaker=message.display_name or message.person_id,
        budgets=budgets,
        count=count,
        templates=templates,
    )


def opening(message: ChatMessage, name: str, templates: Templates = SHIPPED) -> str:
    """The instruction that stands for the person's words when Hex speaks first."""
    who = message.display_name or "them"
    about = f" It is about: {_squash(message.text)}." if message.text.strip() else ""
    why = _squash(message.initiative)
    return render(templates.opening, who=who, name=name, why=why, about=about)


# -- the persona section -----------------------------------------------------------------


def _squash(text: str) -> str:
    return " ".join(text.split())


def _sentences(items: Iterable[str]) -> str:
    return " ".join(s if s.endswith((".", "!", "?")) else f"{s}." for s in map(_squash, items) if s)


def _either(items: Sequence[str]) -> str:
    items = [_squash(s) for s in items]
    # Semicolons: the items have their own "or"s ("hurting, scared or in danger").
    return items[0] if len(items) == 1 else f"{'; '.join(items[:-1])}; or {items[-1]}"


def system_prompt(
    persona: Persona,
    rel: Relationship,
    *,
    deny_now: bool,
    care_owed: bool,
    quiet: bool = False,
    crisis: bool = False,
    moment: Moment | None = None,
) -> str:
    """The persona part of the prompt as one text: :func:`persona_rules`, then :func:`turn_rules`.

    Stays under :data:`PROMPT_WORD_BUDGET` words for the default persona.
    """
    now = turn_rules(
        persona, deny_now=deny_now, care_owed=care_owed, quiet=quiet, crisis=crisis, moment=moment
    )
    return f"{persona_rules(persona, rel)}\n{now}"


def persona_rules(persona: Persona, rel: Relationship) -> str:
    """What the persona holds to all conversation long: identity, values, style, limits, phase."""
    t = persona.tsundere
    out = [f"You are {persona.name}, {_squash(persona.summary)}."]
    if persona.backstory.strip():
        out.append(_squash(persona.backstory))
    if persona.values:
        out.append(f"Values: {_sentences(persona.values)}")
    style = _squash(persona.style.sentence_shape)
    if persona.style.vocabulary:
        style = f"{style} Words you use: {', '.join(persona.style.vocabulary)}.".strip()
    if style:
        out.append(f"Style: {style}")
    if persona.hard_limits:
        out.append(f"Hard limits: {_sentences(persona.hard_limits)}")
    if t.deny_when or t.never_deny_when:
        rule = "Tsundere:"
        if t.deny_when:
            rule += f" you may play off your feelings when {_either(t.deny_when)}."
        if t.never_deny_when:
            rule += f" Never when {_either(t.never_deny_when)}: then be sincere."
        out.append(rule)
    phase = phase_of(rel, persona)
    out.append(f"With this person ({phase.name.replace('_', ' ')}): {_squash(phase.guidance)}")
    return "\n".join(out)


def turn_rules(
    persona: Persona,
    *,
    deny_now: bool,
    care_owed: bool,
    quiet: bool = False,
    crisis: bool = False,
    moment: Moment | None = None,
) -> str:
    """The persona's lines for the message at hand. ``crisis`` overrides ``deny_now`` and
    ``moment``; ``moment`` adds that moment's reaction template."""
    lines = persona.prompt
    out = []
    # In a crisis no moment's act: "hey, i want to die" is not a greeting to play gruff at.
    if moment is not None and not crisis and (hint := getattr(persona.reactions, moment)):
        out.append(f"This moment ({moment.replace('_', ' ')}): {_squash(hint)}")
    if crisis:
        out.append(_squash(lines.crisis))
    else:
        out.append(_squash(lines.deny_now if deny_now else lines.no_denial))
        if care_owed:
            out.append(_squash(lines.care_owed))
    if quiet:
        out.append(_squash(lines.quiet))
    return "\n".join(out)
