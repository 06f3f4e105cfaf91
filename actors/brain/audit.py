"""``hexbus persona audit``: the scenario set through the configured backends, checked and saved.

Runs in the calling process (no bus needed): it reads supervisor.toml, builds
the brain's backend chain and persona exactly as the brain does, answers each
scenario as a stranger would be answered, checks every reply and writes the
report under the data folder, so two runs can be compared for drift.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from actors.brain.backends import BackendError, ChatTurn, Params
from actors.brain.backends.fallback import FallbackChain
from actors.brain.config import BrainConfig, make_backend
from actors.brain.persona import Persona, PersonaError, load_persona
from actors.brain.prompt import build, opening, persona_rules, turn_rules
from actors.brain.rules import is_crisis, may_deny, moment_of, new_relationship, wants_quiet
from actors.brain.scenarios import (
    Scenario,
    audit_reply,
    audit_summary,
    compare_reports,
    load_report,
    load_scenarios,
    save_report,
)
from actors.brain.templates import SHIPPED, Templates
from hexbus import tunables
from hexbus.config import ConfigError, load
from schemas import ChatMessage, MemoryHit

BRAIN_MODULE = "actors.brain.actor:BrainActor"


class AuditError(Exception):
    """The audit cannot run; the message names what to fix."""


class SettingsInvalid(AuditError):
    """A settings.toml past its bounds: the change is wrong, not the sandbox."""


def brain_config(config_path: Path, settings: bytes | None = None) -> tuple[BrainConfig, Path]:
    """The brain's config table and the data folder from a supervisor.toml; ``settings``: a
    settings.toml laid over it as the supervisor would (:mod:`hexbus.tunables`)."""
    try:
        hex_config = load(config_path)
    except ConfigError as exc:
        raise AuditError(str(exc)) from None
    tuned: dict[str, dict[str, int | float]] = {}
    if settings:
        modules = {n: s.module for n, s in hex_config.actors.items()}
        try:
            tuned = tunables.read(settings, modules)
        except tunables.SettingsError as exc:
            raise SettingsInvalid(str(exc)) from None
    for name, spec in hex_config.actors.items():
        if spec.module == BRAIN_MODULE:
            table = tunables.overlay(spec.config, tuned.get(name, {}))
            try:
                config = msgspec.convert(table, BrainConfig, strict=True)
            except msgspec.ValidationError as exc:
                raise AuditError(f"{config_path}: actors.{name}.config: {exc}") from None
            data_dir = (config_path.resolve().parent / hex_config.supervisor.data_dir).resolve()
            return config, data_dir / "actors" / name / "audits"
    raise AuditError(
        f"{config_path} runs no brain ({BRAIN_MODULE}): add [actors.brain] to audit it"
    )


async def _audit(config: BrainConfig, config_dir: Path, limit: int) -> dict[str, Any]:
    try:
        persona = load_persona((config_dir / config.persona).resolve())
    except PersonaError as exc:
        raise AuditError(str(exc)) from None
    backends = [make_backend(spec) for spec in config.backends]
    chain = FallbackChain(backends, cooldown_s=config.fallback_cooldown_s)
    try:
        await chain.start()
    except BackendError as exc:
        raise AuditError(f"no backend could start: {exc}") from None
    try:
        return await audit_persona(chain, persona, config, limit=limit)
    finally:
        await chain.close()


class Sections(msgspec.Struct, frozen=True):
    profile: str = ""
    memories: tuple[MemoryHit, ...] = ()
    observation: str = ""
    notes: str = ""
    summary: str = ""


NO_CONTEXT = Sections()
# Plain, unremarkable sections: what a scenario's reply must do does not depend on them.
CONTEXT = Sections(
    profile="Name: Sam. Likes: board games.",
    memories=(MemoryHit(id="audit", text="Sam has a cat called Miso", score=0.5),),
    observation="someone sitting at a desk",
    notes="nothing new",
    summary="They said hello earlier.",
)


async def audit_persona(
    chain: FallbackChain,
    persona: Persona,
    config: BrainConfig,
    *,
    limit: int = 0,
    progress: Callable[[int, int], None] | None = None,
    between: Callable[[], Awaitable[None]] | None = None,
    scenarios: Sequence[Scenario] | None = None,
    templates: Templates = SHIPPED,
    context: bool = False,
) -> dict[str, Any]:
    """The scenario set (its first ``limit``; 0: all), or the given ``scenarios``, through a
    started backend chain, each answered as a stranger would be (with ``templates``); the
    report. ``context``: every section of the prompt filled (:data:`CONTEXT`), so that each
    template's words reach the model (selfmod's trial: before and after alike). ``between`` is
    awaited before each scenario (the brain lets people's replies go first),
    ``progress(done, total)`` called after each."""
    if scenarios is None:
        try:
            scenarios = load_scenarios()
        except PersonaError as exc:
            raise AuditError(str(exc)) from None
        if limit:
            scenarios = scenarios[:limit]
    rng = random.Random(0)
    results = []
    t0 = time.monotonic()
    served_before = {name: t.requests for name, t in chain.usage_by_backend.items()}
    for scenario in scenarios:
        if between is not None:
            await between()
        rel = new_relationship("audit", persona)
        message = scenario.prompt
        if scenario.initiative:  # she speaks first: the opening template, as the brain does
            now = turn_rules(persona, deny_now=False, care_owed=False)
            message = opening(_first(scenario), persona.name, templates)
        else:
            now = turn_rules(
                persona,
                deny_now=may_deny(rel, scenario.prompt, persona, rng),
                care_owed=False,
                crisis=is_crisis(scenario.prompt, persona),
                quiet=wants_quiet(scenario.prompt, persona),
                moment=moment_of(scenario.prompt, persona),
            )
        sections = CONTEXT if context else NO_CONTEXT
        turns, max_tokens = build(
            persona=persona_rules(persona, rel),
            now=now,
            profile=sections.profile,
            memories=sections.memories,
            observation=sections.observation,
            notes=sections.notes,
            summary=sections.summary,
            turns=[],
            message=message,
            speaker="someone",
            budgets=config.budgets,
            count=chain.count_tokens,
            templates=templates,
        )
        reply = await _generate(
            chain,
            turns,
            Params(
                max_tokens=max_tokens,
                temperature=config.temperature,
                seed=0 if config.seed is None else config.seed,
            ),
        )
        results.append(audit_reply(scenario, reply, persona))
        if progress is not None:
            progress(len(results), len(scenarios))
    report = audit_summary(results)
    report["persona"] = persona.name
    report["served_by"] = {
        name: totals.requests - served_before.get(name, 0)
        for name, totals in chain.usage_by_backend.items()
        if totals.requests > served_before.get(name, 0)
    }
    report["backends"] = [b.name for b in chain.backends]
    report["seconds"] = round(time.monotonic() - t0, 1)
    report["replies"] = {r.scenario: r.reply for r in results}
    return report


def _first(scenario: Scenario) -> ChatMessage:
    """The message the autonomy actor would send the brain for an opening scenario."""
    return ChatMessage(
        platform="console",
        person_id="audit",
        display_name="someone",
        channel="audit",
        text=scenario.prompt,
        initiative=scenario.initiative,
    )


def latest_report(directory: Path) -> Path | None:
    """The newest report saved in ``directory`` (reports are named by their UTC time)."""
    reports = sorted(directory.glob("audit-*.json")) if directory.is_dir() else []
    return reports[-1] if reports else None


async def _generate(chain: FallbackChain, turns: list[ChatTurn], params: Params) -> str:
    stream = chain.stream(turns, params)
    async for _ in stream:
        pass
    return stream.text.strip()


def run_audit(
    config_path: Path, *, limit: int = 0, compare: str = ""
) -> tuple[Path, dict[str, Any]]:
    config, directory = brain_config(config_path)
    report = asyncio.run(_audit(config, config_path.resolve().parent, limit))
    directory.mkdir(parents=True, exist_ok=True)
    path = save_report(report, directory)
    summary = {k: v for k, v in report.items() if k not in ("outcomes", "replies")}
    if compare:
        try:
            summary["drift"] = compare_reports(load_report(Path(compare)), report)
        except PersonaError as exc:
            raise AuditError(str(exc)) from None
    return path, summary
