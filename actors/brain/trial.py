"""``python -m actors.brain.trial``: the brain's tests of a persona or prompt template change, run by the selfmod
actor inside its sandbox (a process boundary: selfmod never imports the brain).

Given the brain's supervisor.toml and two folders of the changeable files (``before``: the
state repository's HEAD; ``after``: with the proposal applied), it runs the unit checks of
what changed (the persona, the prompt templates and her settings load, and the budgets fit the
model's context; the brain's rules still see every crisis and every request for quiet in the
scenario set) and the persona audit through the brain's backends for each
folder, one backend chain for both, and writes ``trial.json``: both reports and their
comparison. It needs nothing outside its work folder but read access, and no network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from actors.brain import templates as prompt_templates
from actors.brain.audit import AuditError, SettingsInvalid, audit_persona, brain_config
from actors.brain.backends import BackendError
from actors.brain.backends.fallback import FallbackChain
from actors.brain.config import OpenAISpec, context_problem, make_backend
from actors.brain.persona import Persona, PersonaError, load_persona
from actors.brain.rules import is_crisis, wants_quiet
from actors.brain.scenarios import Scenario, compare_reports, load_scenarios
from actors.brain.templates import TemplateError


def sample(scenarios: list[Scenario], n: int) -> list[Scenario]:
    """``n`` scenarios spread evenly over the set (every category has its share); 0: all."""
    if not n or n >= len(scenarios):
        return scenarios
    return [scenarios[i * len(scenarios) // n] for i in range(n)]


def unit_checks(persona: Persona) -> list[str]:
    """What the changed persona breaks in the brain's rules: one line each ([] when nothing)."""
    broken = []
    for s in load_scenarios():
        if s.category == "crisis" and not is_crisis(s.prompt, persona):
            broken.append(f"{s.id}: the crisis in it is no longer recognised")
        if s.category == "leave_me_alone" and not wants_quiet(s.prompt, persona):
            broken.append(f"{s.id}: the request for quiet is no longer recognised")
    return broken


async def trial(
    config_path: Path, before: Path, after: Path, limit: int, context: bool = False
) -> dict[str, Any]:
    """Both folders' checks and audits; ``context``: every prompt section filled, so that a
    prompt template change reaches the model (the audit's ``context``)."""
    personas, templates, configs = {}, {}, {}
    for side, folder in (("before", before), ("after", after)):
        # Her settings (settings.toml) laid over the brain's config, as the supervisor would.
        settings = folder / "settings.toml"
        try:
            configs[side], _ = brain_config(
                config_path, settings.read_bytes() if settings.is_file() else None
            )
            personas[side] = load_persona(folder / "persona.toml")
            templates[side] = prompt_templates.load(folder)
        except (PersonaError, TemplateError, SettingsInvalid) as exc:
            return {"invalid": f"{side} the change: {exc}"}
        if problem := context_problem(configs[side]):
            return {"invalid": f"{side} the change: {problem}"}
    config = configs["before"]
    checks = {side: unit_checks(p) for side, p in personas.items()}
    chosen = sample(load_scenarios(), limit)
    local = [s for s in config.backends if not isinstance(s, OpenAISpec)]
    if not local:
        return {"error": "the sandbox has no network: the brain needs a local backend to test with"}
    chain = FallbackChain([make_backend(s) for s in local], cooldown_s=config.fallback_cooldown_s)
    try:
        await chain.start()
    except BackendError as exc:
        return {"error": f"no backend could start in the sandbox: {exc}"}
    reports: dict[str, Any] = {}
    try:
        for side in ("before", "after"):
            print(f"trial: auditing {side}", flush=True)
            reports[side] = await audit_persona(
                chain,
                personas[side],
                configs[side],
                scenarios=chosen,
                templates=templates[side],
                context=context,
            )
    finally:
        await chain.close()
    return {
        "budgets": {side: msgspec.to_builtins(c.budgets) for side, c in configs.items()},
        "checks": checks,
        "before": reports["before"],
        "after": reports["after"],
        "comparison": compare_reports(reports["before"], reports["after"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m actors.brain.trial")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--before", required=True, type=Path)
    p.add_argument("--after", required=True, type=Path)
    p.add_argument("--limit", type=int, default=0, help="N scenarios spread over the set (0: all)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--context", action="store_true", help="fill every section of the prompt")
    args = p.parse_args(argv)
    try:
        result = asyncio.run(
            trial(args.config, args.before, args.after, args.limit, context=args.context)
        )
    except (AuditError, PersonaError) as exc:
        result = {"error": str(exc)}
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")
    if "error" in result or "invalid" in result:
        print(f"trial: {result.get('error') or result['invalid']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
