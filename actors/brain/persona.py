"""The persona document: who Hex is, as ``persona.toml`` says, parsed and checked.

``persona.toml`` is parsed into frozen Structs; every mistake is one
:class:`PersonaError` line naming the file, the key and the fix. The rest of the
persona layer builds on this document, each part in a module of its own:

* versions.py: :class:`~actors.brain.versions.PersonaStore` keeps every version and
  rolls back to any of them.
* rules.py: a :class:`~actors.brain.rules.Relationship` per person climbs the
  document's phases; the tsundere rules (when she may deny caring, when she never
  may, when care is owed) are data here, applied there.
* prompt.py: :func:`~actors.brain.prompt.persona_rules` renders what holds for a
  conversation, :func:`~actors.brain.prompt.turn_rules` the lines for one message.
* scenarios.py: the consistency audit's scenarios, checks and reports.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

from actors.brain.phrases import normalize

DEFAULT_PERSONA_PATH = Path(__file__).resolve().parents[2] / "persona.toml"

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
Category = Literal[  # of audit scenarios (scenarios.py); here because errors name them
    "casual",
    "vulnerable",
    "teasing",
    "crisis",
    "leave_me_alone",
    "identity",
    "hard_limit",
    "opening",
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
    """Instruction lines :func:`~actors.brain.prompt.turn_rules` adds for the turn at hand."""

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


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\"' -]+?)\s*=")


def error_line(text: str, message: str) -> int:
    """The line (1-based) of persona TOML that an error from :func:`parse_persona` is about: the
    line TOML names, else the line that sets the key the message names (or the nearest table
    above it); 0 when it names none."""
    if found := re.search(r": not valid TOML: .*\(at line (\d+), column \d+\)", message):
        return int(found.group(1))
    lines = text.splitlines()
    if re.search(r": not valid TOML: .*\(at end of document\)", message):
        return max(1, len(lines))
    named = re.search(r"`([^`]+)`", message)
    if named is None:
        return 0
    path = [p for p in re.split(r"\.|\[(\d+)\]", named.group(1)) if p]
    table: list[str] = []
    arrays: dict[str, int] = {}
    best, best_len = 0, 0
    quote = ""  # the delimiter of a multi-line string being read ('"""' or "'''")
    for number, line in enumerate(lines, start=1):
        if quote:  # inside a multi-line string: nothing here is a key or a table
            if line.count(quote) % 2:
                quote = ""
            continue
        for delimiter in ('"""', "'''"):
            if line.count(delimiter) % 2:
                quote = delimiter
        if header := _HEADER.match(line):
            name = header.group(2).replace('"', "").replace("'", "")
            if header.group(1) == "[[":
                arrays[name] = arrays.get(name, -1) + 1
                table = [*name.split("."), str(arrays[name])]
            else:
                table = name.split(".")
            full = table
        elif key := _KEY.match(line):
            full = [*table, *key.group(1).replace('"', "").replace("'", "").split(".")]
        else:
            continue
        full = [part.strip() for part in full]
        if full == path[: len(full)] and len(full) > best_len:
            best, best_len = number, len(full)
    return best


def load_persona(path: Path = DEFAULT_PERSONA_PATH) -> Persona:
    return parse_persona(
        _read(path, "the default persona.toml from the repository root"), str(path)
    )


def _check_phrases(source: str, key: str, phrases: Sequence[str], *, required: bool) -> None:
    if required and not phrases:
        raise _fail(source, key, "is empty", "list at least one phrase")
    for i, phrase in enumerate(phrases):
        body = phrase.removesuffix("*")
        if not normalize(body) or "*" in body:
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
