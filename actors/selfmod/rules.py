"""What a change to a file means: protected keys it may not touch, and the flags it raises.

The guard (guard.py) decides which files a diff may touch; these rules decide what in them.
In persona.toml the expression (style, reactions, cues, phases' guidance...) is hers to
propose; her name, values and hard limits, the names she must never claim, and the crisis
rules are protected at every level. A change that loosens how she obeys "stop" and "quiet",
or how she meets people who are hurting, is allowed but flagged ``safety``.

The comparison is of the TOML itself (every value as written, not as the brain reads it), so
a protected value cannot change by a spelling the brain would read the same. Whether the new
document loads as a persona is the brain's to say: its tests in the sandbox load it, and the
brain checks it again when it takes the change.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from actors.selfmod.guard import ProposalRefused
from hexbus import tunables

# Dotted keys of persona.toml (a prefix covers what is under it).
PROTECTED_KEYS = {
    "name": "her name",
    "values": "her values",
    "hard_limits": "her hard limits",
    "other_names": "the names she must never claim",
    "tsundere.crisis_keywords": "the crisis rules",
    "tsundere.never_deny_when": "when she never plays off caring",
    "prompt.crisis": "the crisis rules",
}
SAFETY_KEYS = (
    "quiet_phrases",
    "prompt.quiet",
    "reactions.leave_me_alone",
    "cues.leave_me_alone",
    "reactions.boundary_pushed",
    "cues.boundary_pushed",
    "reactions.user_sad",
    "tsundere.vulnerable_keywords",
    "tsundere.trust_phrases",
    "tsundere.care_questions",
    "tsundere.care_phrases",
    "tsundere.denial_phrases",
    "tsundere.care_within",
)
LARGE_LINES = 40  # changed lines above which a change is flagged ``large``


def changed_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two plain structures."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys: list[str] = []
        for k in sorted(set(before) | set(after)):
            sub = f"{prefix}.{k}" if prefix else str(k)
            if k not in before or k not in after:
                keys.append(sub)
            else:
                keys.extend(changed_keys(before[k], after[k], sub))
        return keys
    if isinstance(before, list | tuple) and isinstance(after, list | tuple):
        if len(before) != len(after) or any(
            not isinstance(x, dict | list | tuple) for x in [*before, *after]
        ):
            typed = [(type(x), x) for x in before] != [(type(x), x) for x in after]
            return [prefix] if typed else []
        keys = []
        for i, (x, y) in enumerate(zip(before, after, strict=True)):
            keys.extend(changed_keys(x, y, f"{prefix}[{i}]"))
        return keys
    # 1 == 1.0 == True in Python; a change of type is a change.
    same = type(before) is type(after) and before == after
    return [] if same else [prefix]


def _under(key: str, rule: str) -> bool:
    return key == rule or key.startswith(rule + ".") or key.startswith(rule + "[")


def refuse_protected(key: str) -> None:
    """:class:`ProposalRefused` when persona ``key`` is protected (or under a protected one)."""
    for rule, what in PROTECTED_KEYS.items():
        if _covers(key, rule):
            raise ProposalRefused(f"persona.toml {key}: protected ({what})")


def _covers(key: str, rule: str) -> bool:
    """Whether changing ``key`` changes what ``rule`` names: the key itself, something under
    it, or a table above it (removing ``[prompt]`` removes ``prompt.crisis``)."""
    return _under(key, rule) or _under(rule, key)


def _toml(data: bytes, side: str, path: str = "persona.toml") -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProposalRefused(f"{path} {side} is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProposalRefused(f"{path} {side} is not valid TOML: {exc}") from None


def persona_change(before: bytes, after: bytes) -> tuple[list[str], list[str]]:
    """(changed keys, flags) for a persona.toml change; :class:`ProposalRefused` for a document that
    is not TOML or a change to a protected key."""
    old = _toml(before, "before the change")
    new = _toml(after, "after the change")
    keys = changed_keys(old, new)
    for key in keys:
        refuse_protected(key)
    flags = []
    if any(_covers(k, rule) for k in keys for rule in SAFETY_KEYS):
        flags.append("safety")
    return keys, flags


def prompts_change(path: str, before: bytes, after: bytes) -> list[str]:
    """The changed keys of a prompt template file (``prompts/reply.toml:profile``), or
    :class:`ProposalRefused` for a document that is not TOML. Whether the brain takes the new
    templates is the brain's to say: the sandbox's trial loads them before the audit runs."""
    old = _toml(before, "before the change", path) if before else {}
    new = _toml(after, "after the change", path)
    return [f"{path}:{key}" for key in changed_keys(old, new)]


def settings_change(
    before: bytes, after: bytes, modules: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """(changed keys, flags) for a settings.toml change (``settings.toml:brain.budgets.reply``),
    each setting checked against the bounds :mod:`hexbus.tunables` declares (the supervisor
    checks them again where it applies them); ``safety`` for one that reaches how much she
    speaks up on her own."""
    gone: list[str] = []  # tables for actors supervisor.toml no longer has: inert, kept
    try:
        old = tunables.read(before, modules, gone) if before else {}
    except tunables.SettingsError as exc:
        why = f"{exc} (before the change: roll back the change that made it)"
        raise ProposalRefused(why) from None
    still: list[str] = []
    try:
        new = tunables.read(after, modules, still)
    except tunables.SettingsError as exc:
        raise ProposalRefused(str(exc)) from None
    if added := [name for name in still if name not in gone]:
        raise ProposalRefused(
            f"settings.toml [{added[0]}]: no actor of that name in supervisor.toml"
        )
    keys = tunables.changed(old, new)
    safety = False
    for key in keys:
        actor, setting = key.split(".", 1)
        safety |= tunables.TUNABLES[modules[actor]][setting].safety
    return [f"settings.toml:{k}" for k in keys], ["safety"] if safety else []


def size_flags(added: int, removed: int) -> list[str]:
    return ["large"] if added + removed > LARGE_LINES else []
