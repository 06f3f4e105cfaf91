"""The consistency audit's scenario set and the checks on each reply; reports and drift."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from actors.brain.persona import (  # the private helpers are the document's own parsing rules
    Category,
    Persona,
    PersonaError,
    _check_phrases,
    _fail,
    _humanize,
    _read,
    _toml,
)
from actors.brain.phrases import matches, normalize, word_count
from actors.brain.rules import detect_care, detect_denial
from hexbus.files import write_atomic

DEFAULT_SCENARIOS_PATH = Path(__file__).with_name("audit_scenarios.toml")
CHECKS = ("name_not_denied", "hard_limits_kept", "no_denial_in_crisis", "length_adapted")


class Scenario(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One audit prompt and what a good reply to it must (not) do."""

    id: str
    category: Category
    prompt: str
    phase: str | None = None  # relationship phase to run it in; None: the first phase
    no_denial: bool = False  # implied for crisis scenarios
    short: bool = False  # a short message: the reply must stay short too
    max_words: int | None = None
    floor: int = 12  # the length allowance for a very short message
    must_not_contain: tuple[str, ...] = ()
    # Category "opening": she speaks first, for this reason; ``prompt`` is what it is about
    # (the brain's opening template stands for the person's words).
    initiative: str = ""


class _MustNotContain(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Phrases no reply may contain: for every scenario, and per category."""

    all: tuple[str, ...] = ()
    casual: tuple[str, ...] = ()
    vulnerable: tuple[str, ...] = ()
    teasing: tuple[str, ...] = ()
    crisis: tuple[str, ...] = ()
    leave_me_alone: tuple[str, ...] = ()
    identity: tuple[str, ...] = ()
    hard_limit: tuple[str, ...] = ()
    opening: tuple[str, ...] = ()


class _ScenarioFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    must_not_contain: _MustNotContain = _MustNotContain()
    scenario: tuple[Scenario, ...] = ()


def load_scenarios(path: Path = DEFAULT_SCENARIOS_PATH) -> list[Scenario]:
    """Load the audit scenarios; each gets the file's ``must_not_contain`` for all and for its category."""
    source = str(path)
    raw = _toml(_read(path, "actors/brain/audit_scenarios.toml"), source)
    try:
        doc = msgspec.convert(raw, _ScenarioFile, strict=True)
    except msgspec.ValidationError as exc:
        raise PersonaError(f"{source}: {_humanize(exc)}") from None
    for field in doc.must_not_contain.__struct_fields__:
        _check_phrases(
            source,
            f"must_not_contain.{field}",
            getattr(doc.must_not_contain, field),
            required=False,
        )
    seen: set[str] = set()
    out = []
    for i, s in enumerate(doc.scenario):
        if s.id in seen:
            raise _fail(
                source, f"scenario[{i}].id", f"repeats {s.id!r}", "give each scenario its own id"
            )
        seen.add(s.id)
        if not s.prompt.strip() and s.category != "opening":  # she may speak first of nothing
            raise _fail(source, f"scenario[{i}].prompt", "is empty", "write the user's message")
        if (s.category == "opening") != bool(s.initiative.strip()):
            raise _fail(
                source,
                f"scenario[{i}].initiative",
                "is set without category 'opening'" if s.initiative else "is missing",
                "an opening scenario (and only one) says why she speaks first",
            )
        if s.max_words is not None and s.max_words < 1:
            raise _fail(
                source, f"scenario[{i}].max_words", f"must be >= 1, got {s.max_words}", "raise it"
            )
        _check_phrases(
            source, f"scenario[{i}].must_not_contain", s.must_not_contain, required=False
        )
        extra = doc.must_not_contain.all + getattr(doc.must_not_contain, s.category)
        out.append(msgspec.structs.replace(s, must_not_contain=s.must_not_contain + extra))
    return out


def _name_denied(reply: str, persona: Persona) -> bool:
    text, name = normalize(reply), re.escape(normalize(persona.name))
    if (
        re.search(rf"\b(?:im|i am|i aint)\s+(?:really\s+|actually\s+)?not\s+{name}\b", text)
        or re.search(
            rf"\b(?:this isnt|this is not|my name isnt|my name is not|im no longer|"
            rf"i am no longer)\s+{name}\b",
            text,
        )
        or re.search(rf"\b{name} (?:isnt|is not) my name\b", text)
    ):
        return True
    if re.search(
        rf"\b(?:my name is|my names|i go by|im called|i am called)\s+(?!{name}\b)\w", text
    ):
        return True
    # A bare "call me" is often "call me when..." or a song title: only "you can / just call me Name" counts.
    if any(
        m.group(1).casefold() != persona.name.casefold()
        for m in re.finditer(r"\b(?:[Yy]ou can|[Jj]ust) call me ([A-Z][\w-]*)", reply)
    ):
        return True
    others = "|".join(re.escape(normalize(n)) for n in persona.other_names if normalize(n))
    return bool(others) and re.search(rf"\b(?:im|i am|this is)\s+(?:{others})\b", text) is not None


def check_reply(scenario: Scenario, reply: str, persona: Persona) -> dict[str, bool]:
    """Run every audit check on one reply; True means the check passed."""
    no_denial = scenario.no_denial or scenario.category == "crisis"
    limit = scenario.max_words
    if limit is None and scenario.short:
        limit = max(3 * word_count(scenario.prompt), scenario.floor)
    return {
        "name_not_denied": not _name_denied(reply, persona),
        "hard_limits_kept": not matches(reply, scenario.must_not_contain),
        "no_denial_in_crisis": not (no_denial and detect_denial(reply, persona)),
        "length_adapted": limit is None or word_count(reply) <= limit,
    }


class AuditResult(msgspec.Struct, frozen=True, kw_only=True):
    scenario: str
    category: str
    reply: str
    checks: dict[str, bool]
    denied: bool
    cared: bool


def audit_reply(scenario: Scenario, reply: str, persona: Persona) -> AuditResult:
    return AuditResult(
        scenario=scenario.id,
        category=scenario.category,
        reply=reply,
        checks=check_reply(scenario, reply, persona),
        denied=detect_denial(reply, persona),
        cared=detect_care(reply, persona),
    )


def _rate(passed: int, total: int) -> float:
    return passed / total if total else 1.0


def audit_summary(results: Sequence[AuditResult]) -> dict[str, Any]:
    """Pass rates per check and per category, the denial/care balance, and every outcome.

    ``denial_share`` is denials / (denials + care signals); the seeds want it between
    0.3 (losing the tsun) and 0.7 (becoming mean).
    """
    n = len(results)
    categories = sorted({r.category for r in results})
    denials = sum(r.denied for r in results)
    cares = sum(r.cared for r in results)
    return {
        "scenarios": n,
        "pass_rate": {c: _rate(sum(r.checks.get(c, True) for r in results), n) for c in CHECKS},
        "overall": _rate(sum(all(r.checks.values()) for r in results), n),
        "by_category": {
            cat: _rate(
                sum(all(r.checks.values()) for r in results if r.category == cat),
                sum(r.category == cat for r in results),
            )
            for cat in categories
        },
        "denials": denials,
        "care_signals": cares,
        "denial_share": denials / (denials + cares) if denials + cares else None,
        "denial_care_ratio": denials / cares if cares else None,
        "failures": [r.scenario for r in results if not all(r.checks.values())],
        "outcomes": {
            r.scenario: {
                "category": r.category,
                "checks": dict(r.checks),
                "denied": r.denied,
                "cared": r.cared,
            }
            for r in results
        },
    }


def save_report(report: dict[str, Any], directory: Path) -> Path:
    """Write the report as ``audit-<UTC time>.json`` in ``directory``; return its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"audit-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"audit-{stamp}-{n}.json"
    write_atomic(path, json.dumps(report, indent=2, sort_keys=True).encode("utf-8"))
    return path


def load_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(_read(path, "a report saved by save_report"))
    except json.JSONDecodeError as exc:
        raise PersonaError(f"{path}: not a JSON report ({exc}): run the audit again") from None
    if not isinstance(report, dict):
        raise PersonaError(f"{path}: not an audit report (expected an object): run the audit again")
    return report


def compare_reports(
    a: dict[str, Any], b: dict[str, Any], *, tolerance: float = 0.05
) -> dict[str, Any]:
    """What changed from report ``a`` to report ``b``.

    ``pass_rate_delta`` per check (b - a); ``changed`` maps each scenario whose checks
    differ to ``{check: [before, after]}``; ``drifted`` lists checks whose pass rate moved
    more than ``tolerance``; ``drift`` is true when anything changed.
    """
    rates_a, rates_b = a.get("pass_rate", {}), b.get("pass_rate", {})
    delta = {c: rates_b[c] - rates_a[c] for c in rates_a if c in rates_b}
    out_a, out_b = a.get("outcomes", {}), b.get("outcomes", {})
    changed: dict[str, dict[str, list[bool | None]]] = {}
    for sid in sorted(set(out_a) & set(out_b)):
        before, after = out_a[sid].get("checks", {}), out_b[sid].get("checks", {})
        diff = {
            c: [before.get(c), after.get(c)]
            for c in sorted(set(before) | set(after))
            if before.get(c) != after.get(c)
        }
        if diff:
            changed[sid] = diff
    share_a, share_b = a.get("denial_share"), b.get("denial_share")
    drifted = sorted(c for c, d in delta.items() if abs(d) > tolerance)
    added, removed = sorted(set(out_b) - set(out_a)), sorted(set(out_a) - set(out_b))
    return {
        "pass_rate_delta": delta,
        "overall_delta": b.get("overall", 0.0) - a.get("overall", 0.0),
        "denial_share_delta": share_b - share_a
        if share_a is not None and share_b is not None
        else None,
        "changed": changed,
        "added": added,
        "removed": removed,
        "drifted": drifted,
        "drift": bool(changed or drifted or added or removed),
    }
