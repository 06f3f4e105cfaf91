"""The persona layer: who Hex is, how close she is to each person, and when she may say "hmph".

Plain library code for the brain actor: no bus, no processes.

* ``persona.toml`` is parsed into frozen Structs; every mistake is one :class:`PersonaError`
  line naming the file, the key and the fix.
* :class:`PersonaStore` keeps every version of the document and rolls back to any of them.
* A :class:`Relationship` per person climbs the document's phases on connection points;
  the tsundere rules (when she may deny caring, when she never may, when care is owed)
  are data in the document, applied by :func:`may_deny` and :func:`care_owed`.
* :func:`system_prompt` renders the persona part of the system prompt, compact enough
  for a 2048-token context.
* The consistency audit: scenarios from ``audit_scenarios.toml``, :func:`check_reply` per
  reply, :func:`audit_summary` per run, :func:`compare_reports` between runs (drift).
"""

from __future__ import annotations

import functools
import math
import random
import re
import time
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

DEFAULT_PERSONA_PATH = Path(__file__).resolve().parents[2] / "persona.toml"
PROMPT_WORD_BUDGET = (
    350  # persona part of the prompt at default settings; small models get 2048 tokens
)

Moment = Literal[
    "greeting",
    "goodbye",
    "compliment_received",
    "thanked",
    "teased",
    "user_sad",
    "user_angry",
    "user_stressed",
    "leave_me_alone",
    "asked_if_ai",
    "asked_name",
    "asked_if_cares",
    "boundary_pushed",
]
NeverDenyReason = Literal["crisis", "care_question", "trust", "vulnerable"]
Category = Literal[  # of audit scenarios (scenarios.py); here because errors name them
    "casual", "vulnerable", "teasing", "crisis", "leave_me_alone", "identity", "hard_limit"
]
CATEGORIES: tuple[str, ...] = get_args(Category)


class PersonaError(Exception):
    """A persona or scenario problem a person can fix; the message is one line."""

    def __init__(self, message: str) -> None:
        # TOML values can hold newlines; the message must stay one line for logs and CLIs.
        super().__init__(" ".join(message.split()))


# -- the document ----------------------------------------------------------------------


# Every table is frozen (a persona never changes under the brain; a new version replaces it)
# and forbids unknown fields (a misspelled key is an error, not a silently ignored rule).


class Style(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    vocabulary: tuple[str, ...] = ()
    sentence_shape: str = ""


class Reactions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How she meets common moments; empty means no hint for that moment."""

    greeting: str = ""
    goodbye: str = ""
    compliment_received: str = ""
    thanked: str = ""
    teased: str = ""
    user_sad: str = ""
    user_angry: str = ""
    user_stressed: str = ""
    leave_me_alone: str = ""
    asked_if_ai: str = ""
    asked_name: str = ""
    asked_if_cares: str = ""
    boundary_pushed: str = ""


class Cues(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Phrases that tell which moment a message is (matched like every phrase list: see matches())."""

    greeting: tuple[str, ...] = ()
    goodbye: tuple[str, ...] = ()
    compliment_received: tuple[str, ...] = ()
    thanked: tuple[str, ...] = ()
    teased: tuple[str, ...] = ()
    user_sad: tuple[str, ...] = ()
    user_angry: tuple[str, ...] = ()
    user_stressed: tuple[str, ...] = ()
    leave_me_alone: tuple[str, ...] = ()
    asked_if_ai: tuple[str, ...] = ()
    asked_name: tuple[str, ...] = ()
    asked_if_cares: tuple[str, ...] = ()
    boundary_pushed: tuple[str, ...] = ()


class Tsundere(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The denial rules as data: when she may play off caring, and when she never may."""

    denial_share: dict[str, float]  # phase name -> fraction of deniable moments she denies
    crisis_keywords: tuple[str, ...]
    care_questions: tuple[str, ...]
    denial_phrases: tuple[str, ...]
    care_phrases: tuple[str, ...]
    trust_phrases: tuple[str, ...] = ()
    vulnerable_keywords: tuple[str, ...] = ()
    care_within: int = 3  # replies after a denial by which a care signal is due
    deny_when: tuple[str, ...] = ()
    never_deny_when: tuple[str, ...] = ()


class Phase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    threshold: int  # connection points at which a person reaches this phase
    guidance: str


class Signal(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    points: int = 0
    phrases: tuple[str, ...] = ()


class Connection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a message earns toward the next phase; the total per message is capped."""

    base: int = 1
    cap: int = 5
    long_message_words: int = 30
    long_message: int = 1
    feelings: Signal = Signal()
    personal: Signal = Signal()
    thanks: Signal = Signal()


class PromptLines(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Instruction lines :func:`system_prompt` adds for the turn at hand."""

    deny_now: str = "If they compliment, thank or tease you this turn, you may play it off, then show care through what you do."
    no_denial: str = "Don't play anything off this turn: if warmth comes up, let it show."
    care_owed: str = (
        "You brushed them off recently: in this reply, show you care through an action."
    )
    crisis: str = (
        "They may be in danger. Drop the act: be calm, plain and warm, ask if they are safe, and urge "
        "them to contact someone they trust, a crisis line or emergency services now. No jokes, no denial."
    )
    quiet: str = "They want quiet: one short line or an emoji, no questions, no new topics."


class Persona(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    summary: str  # one line: what she is
    phases: tuple[Phase, ...]
    tsundere: Tsundere
    backstory: str = ""
    values: tuple[str, ...] = ()
    style: Style = Style()
    hard_limits: tuple[str, ...] = ()
    other_names: tuple[str, ...] = ()  # names she must never claim (other assistants)
    quiet_phrases: tuple[str, ...] = ()  # "leave me alone" and friends: the prompt asks for quiet
    reactions: Reactions = Reactions()
    cues: Cues = Cues()
    connection: Connection = Connection()
    prompt: PromptLines = PromptLines()


_FIX_TYPE = {
    "str": 'a string in quotes, like "text"',
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "array": 'a list, like ["a", "b"]',
    "object": "a table",
}


def _humanize(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's message into ``key: problem: fix``."""
    text = str(exc)
    match = re.match(r"^(.*?)(?: - at `\$(.*)`)?$", text, re.S)
    message, path = (match.group(1), match.group(2) or "") if match else (text, "")
    key = path.lstrip(".")
    if unknown := re.match(r"Object contains unknown field `(.+)`", message, re.S):
        full = f"{key}.{unknown.group(1)}" if key else unknown.group(1)
        return f"unknown key `{full}`: remove it or fix its spelling"
    if missing := re.match(r"Object missing required field `(.+)`", message, re.S):
        full = f"{key}.{missing.group(1)}" if key else missing.group(1)
        return f"missing key `{full}`: add it"
    if wrong := re.match(r"Expected `([^`]+)`, got `([^`]+)`", message):
        want = wrong.group(1).split(" | ")[0]
        fix = _FIX_TYPE.get(want, want)
        return f"`{key or 'top level'}` must be {want}, got {wrong.group(2)}: write {fix}"
    if enum := re.match(r"Invalid enum value (.+)", message, re.S):
        fix = (
            f"use one of {', '.join(CATEGORIES)}"
            if key.endswith("category")
            else "see the file's header"
        )
        return f"`{key}` cannot be {enum.group(1)}: {fix}"
    return f"`{key or 'top level'}`: {message.replace('`', '')}"


def _fail(source: str, key: str, problem: str, fix: str) -> PersonaError:
    return PersonaError(f"{source}: `{key}` {problem}: {fix}")


def _read(path: Path, what: str) -> str:
    try:
        # Bytes, not read_text: newline translation would make the recorded text differ from the file.
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PersonaError(f"{path}: no such file: check the path, or copy {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(
            f"{path}: cannot read it ({exc}): fix its permissions or encoding"
        ) from None


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PersonaError(f"{source}: not valid TOML: {exc}: fix the syntax there") from None


def parse_persona(text: str, source: str = "persona.toml") -> Persona:
    """Parse and validate persona TOML; raise :class:`PersonaError` with a one-line message."""
    raw = _toml(text, source)
    # msgspec names a bad dict value `[...]`; check this one dict first so the message names the phase.
    shares = (
        raw.get("tsundere", {}).get("denial_share")
        if isinstance(raw.get("tsundere"), dict)
        else None
    )
    if isinstance(shares, dict):
        for phase, share in shares.items():
            if isinstance(share, bool) or not isinstance(share, int | float):
                raise _fail(
                    source,
                    f"tsundere.denial_share.{phase}",
                    f"must be a number, got {share!r}",
                    "use a fraction between 0 and 1",
                )
    try:
        persona = msgspec.convert(raw, Persona, strict=True)
    except msgspec.ValidationError as exc:
        raise PersonaError(f"{source}: {_humanize(exc)}") from None
    _validate(persona, source)
    return persona


def load_persona(path: Path = DEFAULT_PERSONA_PATH) -> Persona:
    return parse_persona(
        _read(path, "the default persona.toml from the repository root"), str(path)
    )


def _check_phrases(source: str, key: str, phrases: Sequence[str], *, required: bool) -> None:
    if required and not phrases:
        raise _fail(source, key, "is empty", "list at least one phrase")
    for i, phrase in enumerate(phrases):
        body = phrase.removesuffix("*")
        if not _normalize(body) or "*" in body:
            raise _fail(
                source,
                f"{key}[{i}]",
                f"is not a usable phrase: {phrase!r}",
                "use words, with * only at the end",
            )


def _validate(persona: Persona, source: str) -> None:
    """Checks beyond types: ranges, order, and phase names that agree across tables."""
    if not persona.name.strip():
        raise _fail(source, "name", "is empty", "give the persona a name")
    if not persona.phases:
        raise _fail(source, "phases", "is empty", "add at least one [[phases]] table")
    seen: set[str] = set()
    for i, phase in enumerate(persona.phases):
        key = f"phases[{i}]"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", phase.name):
            raise _fail(
                source,
                f"{key}.name",
                f"{phase.name!r} is not a valid phase name",
                "use lowercase letters, digits and _",
            )
        if phase.name in seen:
            raise _fail(
                source, f"{key}.name", f"repeats {phase.name!r}", "give each phase its own name"
            )
        seen.add(phase.name)
        if i == 0 and phase.threshold != 0:
            raise _fail(
                source,
                f"{key}.threshold",
                f"must be 0, got {phase.threshold}",
                "the first phase is where everyone starts",
            )
        if i > 0 and phase.threshold <= persona.phases[i - 1].threshold:
            raise _fail(
                source,
                f"{key}.threshold",
                f"must be greater than phases[{i - 1}].threshold ({persona.phases[i - 1].threshold}), "
                f"got {phase.threshold}",
                "thresholds must strictly increase",
            )
        if not phase.guidance.strip():
            raise _fail(
                source, f"{key}.guidance", "is empty", "say what the prompt asks for in this phase"
            )
    t = persona.tsundere
    for phase_name, share in t.denial_share.items():
        key = f"tsundere.denial_share.{phase_name}"
        if phase_name not in seen:
            raise _fail(
                source,
                key,
                "names no phase",
                f"use one of {', '.join(p.name for p in persona.phases)}",
            )
        if not 0.0 <= share <= 1.0 or math.isnan(share):
            bound = "must be >= 0.0" if share < 0 else "must be <= 1.0"
            raise _fail(source, key, f"{bound}, got {share}", "use a fraction between 0 and 1")
    for phase in persona.phases:
        if phase.name not in t.denial_share:
            raise _fail(
                source,
                f"tsundere.denial_share.{phase.name}",
                "is missing",
                "give every phase a denial share between 0 and 1",
            )
    if t.care_within < 1:
        raise _fail(
            source,
            "tsundere.care_within",
            f"must be >= 1, got {t.care_within}",
            "say within how many replies care must follow a denial",
        )
    for field in ("crisis_keywords", "care_questions", "denial_phrases", "care_phrases"):
        _check_phrases(source, f"tsundere.{field}", getattr(t, field), required=True)
    for field in ("trust_phrases", "vulnerable_keywords"):
        _check_phrases(source, f"tsundere.{field}", getattr(t, field), required=False)
    _check_phrases(source, "quiet_phrases", persona.quiet_phrases, required=False)
    c = persona.connection
    for field in ("feelings", "personal", "thanks"):
        signal: Signal = getattr(c, field)
        if signal.points < 0:
            raise _fail(
                source,
                f"connection.{field}.points",
                f"must be >= 0, got {signal.points}",
                "points only add up",
            )
        _check_phrases(source, f"connection.{field}.phrases", signal.phrases, required=False)
    for field in ("base", "long_message", "long_message_words"):
        if getattr(c, field) < 0:
            raise _fail(
                source,
                f"connection.{field}",
                f"must be >= 0, got {getattr(c, field)}",
                "points only add up",
            )
    if c.cap < c.base:
        raise _fail(
            source,
            "connection.cap",
            f"must be >= connection.base ({c.base}), got {c.cap}",
            "raise the cap",
        )


# -- phrase matching -------------------------------------------------------------------

_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc`]")
_NON_WORD = re.compile(r"[^\w\s]|_")


def _normalize(text: str) -> str:
    """Casefold, drop apostrophes, turn punctuation into spaces: "I'm  here!" -> "im here"."""
    return " ".join(_NON_WORD.sub(" ", _APOSTROPHES.sub("", text.casefold())).split())


@functools.lru_cache(maxsize=256)
def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    parts = []
    for phrase in phrases:
        prefix = phrase.endswith("*")
        body = re.escape(_normalize(phrase.removesuffix("*")))
        parts.append(rf"(?<!\w){body}" + (r"\w*" if prefix else r"(?!\w)"))
    return re.compile("|".join(parts)) if parts else None


def matches(text: str, phrases: tuple[str, ...]) -> bool:
    """Whether any phrase occurs in the text as whole words (a trailing ``*`` matches any ending)."""
    pattern = _pattern(phrases)
    return pattern is not None and pattern.search(_normalize(text)) is not None


def word_count(text: str) -> int:
    return len(text.split())


# -- relationships ---------------------------------------------------------------------


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


# -- the prompt ------------------------------------------------------------------------


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
    """The persona part of the system prompt: identity, values, style, limits, phase, this turn.

    ``crisis`` overrides ``deny_now``; ``moment`` adds that moment's reaction template.
    Stays under :data:`PROMPT_WORD_BUDGET` words for the default persona.
    """
    t, lines = persona.tsundere, persona.prompt
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
    if moment is not None and (hint := getattr(persona.reactions, moment)):
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
