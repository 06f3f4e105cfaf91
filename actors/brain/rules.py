"""The persona's rules applied to people and messages: relationship phases, the tsundere rules, moments.

A :class:`Relationship` per person climbs the document's phases on connection
points. When she may play off caring (:func:`may_deny`), when she never may
(:func:`never_deny_reason`) and when care is owed (:func:`care_owed`) are data in
the document; these functions apply them. Plain functions over the document: no
bus, no state beyond the Relationship passed in.
"""

from __future__ import annotations

import random
import time
from typing import Literal

import msgspec

from actors.brain.persona import Moment, Persona, Phase
from actors.brain.phrases import matches, word_count

NeverDenyReason = Literal["crisis", "care_question", "trust", "vulnerable"]


class Relationship(msgspec.Struct, kw_only=True):
    """How close Hex is to one person; lives in the brain actor's state.

    ``messages_since_denial`` counts her replies since an unanswered denial; ``None``
    means no care is owed.
    """

    person_id: str
    points: int = 0
    phase: str = ""
    messages_since_denial: int | None = None
    denials: int = 0
    care_signals: int = 0
    last_seen: float = 0.0


def new_relationship(person_id: str, persona: Persona, *, now: float = 0.0) -> Relationship:
    return Relationship(person_id=person_id, phase=persona.phases[0].name, last_seen=now)


def phase_for(points: int, persona: Persona) -> Phase:
    """The highest phase whose threshold the points reach."""
    reached = persona.phases[0]
    for phase in persona.phases:
        if points >= phase.threshold:
            reached = phase
    return reached


def phase_of(rel: Relationship, persona: Persona) -> Phase:
    """The person's phase; one the document no longer names is recomputed from points."""
    for phase in persona.phases:
        if phase.name == rel.phase:
            return phase
    return phase_for(rel.points, persona)


def connection_points(text: str, persona: Persona) -> int:
    """What one message earns: a base, bonuses for feelings, personal news, thanks and length, capped."""
    c = persona.connection
    points = c.base
    for signal in (c.feelings, c.personal, c.thanks):
        if matches(text, signal.phrases):
            points += signal.points
    if c.long_message_words and word_count(text) >= c.long_message_words:
        points += c.long_message
    return min(points, c.cap)


def update_relationship(
    rel: Relationship, points: int, persona: Persona, *, now: float | None = None
) -> str | None:
    """Add points; return the new phase's name when the person moved up, else None.

    Phases only move up: points never decay in this version, so a quiet month
    does not turn a close friend back into a stranger.
    """
    if points < 0:
        raise ValueError(f"connection points only add up, got {points}")
    rel.points += points
    rel.last_seen = time.time() if now is None else now
    names = [p.name for p in persona.phases]
    current = names.index(rel.phase) if rel.phase in names else -1
    target = phase_for(rel.points, persona)
    if names.index(target.name) > current:
        rel.phase = target.name
        return target.name
    return None


# -- the tsundere rules ----------------------------------------------------------------


def is_crisis(text: str, persona: Persona) -> bool:
    return matches(text, persona.tsundere.crisis_keywords)


def is_direct_care_question(text: str, persona: Persona) -> bool:
    return matches(text, persona.tsundere.care_questions)


def never_deny_reason(text: str, persona: Persona) -> NeverDenyReason | None:
    """Why this message rules out a denial, most serious first; None when a denial may fit."""
    t = persona.tsundere
    if is_crisis(text, persona):
        return "crisis"
    if is_direct_care_question(text, persona):
        return "care_question"
    if matches(text, t.trust_phrases):
        return "trust"
    if matches(text, t.vulnerable_keywords):
        return "vulnerable"
    return None


def wants_quiet(text: str, persona: Persona) -> bool:
    """The person asks for quiet or space: pass ``quiet=True`` to :func:`system_prompt`."""
    return matches(text, persona.quiet_phrases)


# Most telling first: a message that is both a greeting and sad is met as sad.
_MOMENT_ORDER: tuple[Moment, ...] = (
    "asked_if_cares",
    "user_sad",
    "user_angry",
    "user_stressed",
    "leave_me_alone",
    "boundary_pushed",
    "asked_if_ai",
    "asked_name",
    "compliment_received",
    "thanked",
    "teased",
    "goodbye",
    "greeting",
)


def moment_of(text: str, persona: Persona) -> Moment | None:
    """Which common moment a message is, by the document's cues; None for none of them."""
    for moment in _MOMENT_ORDER:
        if matches(text, getattr(persona.cues, moment)):
            return moment
    return None


def care_owed(rel: Relationship, persona: Persona) -> bool:
    """A denial is unanswered: her next reply should carry a care signal.

    True from the denial until a reply with a care signal (see :func:`record_reply`);
    the document's ``care_within`` is the deadline, past which :func:`care_overdue` holds.
    """
    return rel.messages_since_denial is not None


def care_overdue(rel: Relationship, persona: Persona) -> bool:
    """``care_within`` replies passed since a denial without a care signal."""
    since = rel.messages_since_denial
    return since is not None and since >= persona.tsundere.care_within


def may_deny(rel: Relationship, text: str, persona: Persona, rng: random.Random) -> bool:
    """Whether this turn may play off caring: never in crisis, to a direct care question,
    a confidence or a hurting person, nor while care is overdue; otherwise with the
    phase's denial share."""
    if never_deny_reason(text, persona) is not None or care_overdue(rel, persona):
        return False
    return rng.random() < persona.tsundere.denial_share[phase_of(rel, persona).name]


def detect_denial(reply: str, persona: Persona) -> bool:
    return matches(reply, persona.tsundere.denial_phrases)


def detect_care(reply: str, persona: Persona) -> bool:
    return matches(reply, persona.tsundere.care_phrases)


def record_reply(rel: Relationship, reply: str, persona: Persona) -> tuple[bool, bool]:
    """Count one reply of hers: returns (denied, cared).

    A denial starts the care clock; a care signal, in the same reply or a later one,
    settles it.
    """
    denied, cared = detect_denial(reply, persona), detect_care(reply, persona)
    if rel.messages_since_denial is not None:
        rel.messages_since_denial += 1
    if denied:
        rel.denials += 1
        rel.messages_since_denial = 0
    if cared:
        rel.care_signals += 1
        rel.messages_since_denial = None
    return denied, cared
