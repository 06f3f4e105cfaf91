"""How long a persona change takes from proposal to sandbox report, and to roll back; and what
a plugin's isolation costs.

A real change (``style.sentence_shape`` rewritten, as an owner's "be less formal" drafts it)
goes through the selfmod workshop on the packaged model: checked, tested in the sandbox (the
best isolation this machine offers) on ``--scenarios`` audit scenarios before and after, then
approved and rolled back. In the same run, the same audit runs outside any sandbox (the
baseline): the ratio is what the isolation and the second process cost, and
``scenario_share`` is the part of the sandbox's time spent answering scenarios.

Printed (JSON): ``sandbox_s``, ``baseline_s``, ``sandbox_ratio``, ``scenario_share``,
``rollback_s`` (a decision's git revert, with the commit) and ``isolation``; for the other
levels, proposal to sandbox report of a settings change (``settings_sandbox_s``, level 2) and
of a prompt template change (``logic_sandbox_s``, level 4, on ``--logic-scenarios``: by
default the same ``--scenarios``; ``0`` is the level's own default, the whole set). For a plugin (level
3): ``plugin_sandbox_s`` (its proposal to its sandbox report: checked and fed the audit's 110
conversations), ``plugin_baseline_s`` (the same trial in this process) and their ratio; and per
event, the plugin host's round trip to the plugin's sandboxed runner (``plugin_event_ms``) against
calling it in this process (``plugin_event_inprocess_ms``), with their ratio.

    python bench/selfmod.py [--scenarios 10] [--logic-scenarios 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from actors.brain.audit import audit_persona, brain_config
from actors.brain.backends.fallback import FallbackChain
from actors.brain.config import make_backend
from actors.brain.persona import DEFAULT_PERSONA_PATH, load_persona
from actors.brain.scenarios import load_scenarios
from actors.brain.trial import sample
from actors.plugins.config import RUNNER_LIMITS
from actors.plugins.host import Runner
from actors.plugins.runner import call, load
from actors.plugins.trial import events
from actors.plugins.trial import trial as plugin_trial
from actors.selfmod.config import SelfmodConfig, SelfmodState
from actors.selfmod.draft import rewrite, unified
from actors.selfmod.workshop import Workshop
from schemas import SelfmodDecide, SelfmodProposal

CONFIG = """
[actors.brain]
module = "actors.brain.actor:BrainActor"
[actors.brain.config]
backends = [{type = "llamacpp"}]
seed = 7
"""


GREETER = """import re

TOPICS = ("chat.message",)


def react(event, hex):
    hex.data["n"] = hex.data.get("n", 0) + 1
    if re.search(r"\\b(good )?morning\\b", event["text"], re.I):
        hex.note("they said good morning: say it back first")
"""


def level_figures(shop: Workshop) -> dict[str, float]:
    """Proposal -> sandbox report for a settings change (level 2) and a prompt template change
    (level 4: every section of the prompt filled, so each reply template reaches the model)."""
    out: dict[str, float] = {}
    changes = {
        "settings": ("settings.toml", "[brain.budgets]\nreply = 120\n"),
        "logic": ("prompts/reply.toml", 'memories = "Moments you remember together:"\n'),
    }
    for name, (path, text) in changes.items():
        diff = unified("", text, path, new=True)
        started = time.perf_counter()
        p = shop.submit(f"bench-{name}", SelfmodProposal(diff=diff, why=name), lambda _: True, 0)
        tested = shop.test(p.id)
        if tested.status != "ready":
            raise SystemExit(f"the {name} change's sandbox run did not pass: {tested.reason}")
        out[f"{name}_sandbox_s"] = round(time.perf_counter() - started, 2)
    return out


def plugin_figures(shop: Workshop, root: Path) -> dict[str, float]:
    diff = unified("", GREETER, "plugins/greeter.py", new=True)
    started = time.perf_counter()
    p = shop.submit("bench-plugin", SelfmodProposal(diff=diff, why="greet"), lambda _: True, 0)
    tested = shop.test(p.id)
    sandbox_s = time.perf_counter() - started
    if tested.status != "ready":
        raise SystemExit(f"the plugin's sandbox run did not pass: {tested.reason}")
    path = root / "greeter.py"
    path.write_text(GREETER)
    started = time.perf_counter()
    plugin_trial(path)
    baseline_s = time.perf_counter() - started
    said = [e for topic, e in events() if topic == "chat.message"]
    react, _ = load(GREETER, "greeter")
    started = time.perf_counter()
    for event in said:
        call(react, event, {})
    inprocess = (time.perf_counter() - started) / len(said)
    runner = Runner("greeter", GREETER, root / "run", RUNNER_LIMITS)
    runner.start(30)
    try:
        started = time.perf_counter()
        for event in said:
            runner.call(event, {}, 5)
        hosted = (time.perf_counter() - started) / len(said)
    finally:
        runner.stop()
    return {
        "plugin_sandbox_s": round(sandbox_s, 2),
        "plugin_baseline_s": round(baseline_s, 3),
        "plugin_sandbox_ratio": round(sandbox_s / baseline_s, 1),
        "plugin_event_ms": round(hosted * 1000, 3),
        "plugin_event_inprocess_ms": round(inprocess * 1000, 3),
        "plugin_event_ratio": round(hosted / inprocess, 1),
    }


async def baseline(config_path: Path, folders: list[Path], n: int) -> float:
    """The same audit, both sides, in this process: no sandbox."""
    config, _ = brain_config(config_path)
    chain = FallbackChain([make_backend(s) for s in config.backends])
    started = time.perf_counter()
    await chain.start()
    try:
        for folder in folders:
            persona = load_persona(folder / "persona.toml")
            chosen = sample(load_scenarios(), n)
            await audit_persona(chain, persona, config, scenarios=chosen)
    finally:
        await chain.close()
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenarios", type=int, default=10)
    # A prompt template change's own scenario count (level 4 asks for the whole set: 0).
    p.add_argument("--logic-scenarios", type=int, default=None)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hxbench"))
    try:
        shutil.copy(DEFAULT_PERSONA_PATH, root / "persona.toml")
        (root / "supervisor.toml").write_text(CONFIG)
        data = root / "data" / "actors" / "selfmod"
        data.mkdir(parents=True)
        shop = Workshop(
            SelfmodConfig(
                scenarios=args.scenarios,
                logic_scenarios=args.scenarios
                if args.logic_scenarios is None
                else args.logic_scenarios,
            ),
            SelfmodState(),
            data,
            root,
            root / "supervisor.toml",
            hide=(root / "data",),
        )
        shop.open(time.time())
        text = DEFAULT_PERSONA_PATH.read_text()
        change = unified(
            text, rewrite(text, "style.sentence_shape", "Relaxed, warm, less formal sentences.")
        )
        started = time.perf_counter()
        p1 = shop.submit(
            "bench", SelfmodProposal(diff=change, why="less formal"), lambda _: True, 0
        )
        tested = shop.test(p1.id)
        sandbox_s = time.perf_counter() - started
        if tested.status != "ready":
            raise SystemExit(f"the sandbox run did not pass: {tested.status}: {tested.reason}")
        shop.settle(p1.id, tested, 0)
        audit_s = (tested.before.seconds if tested.before else 0) + (
            tested.after.seconds if tested.after else 0
        )
        work = shop.work_root / f"p{p1.id}"
        base_s = asyncio.run(
            baseline(root / "supervisor.toml", [work / "before", work / "after"], args.scenarios)
        )
        shop.decide(SelfmodDecide(action="approve", id=p1.id, by="bench", owner=True), "a", 1)
        started = time.perf_counter()
        shop.decide(SelfmodDecide(action="rollback", id=p1.id, by="bench", owner=True), "r", 2)
        rollback_s = time.perf_counter() - started
        assert shop.text() == text
        levels = level_figures(shop)
        plugins = plugin_figures(shop, root)
        print(
            json.dumps(
                {
                    "scenarios": args.scenarios,
                    "logic_scenarios": args.scenarios
                    if args.logic_scenarios is None
                    else args.logic_scenarios,
                    "isolation": tested.isolation,
                    "sandbox_s": round(sandbox_s, 2),
                    "baseline_s": round(base_s, 2),
                    "sandbox_ratio": round(sandbox_s / base_s, 2),
                    "scenario_share": round(audit_s / sandbox_s, 2),
                    "rollback_s": round(rollback_s, 3),
                    **levels,
                    **plugins,
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
