"""What a sandbox run reports, read back and judged: the persona audit's before and after, or a
plugin's run over the audit's conversations. The report is read with
:func:`hexbus.sandbox.read_written`: never through a link, nor a FIFO, the run may have left in
its place."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexbus import sandbox
from hexbus.sandbox import SandboxLimits, SandboxRun
from schemas.selfmod import AuditFigures


@dataclass
class Tested:
    """A sandbox run's outcome, applied to its proposal on the actor's loop."""

    status: str
    reason: str = ""
    before: AuditFigures | None = None
    after: AuditFigures | None = None
    flags: list[str] = field(default_factory=list)
    isolation: str = ""


Judge = Callable[[dict[str, Any], str], Tested]  # a report and the isolation it ran in


def run_judged(
    argv: list[str],
    work: Path,
    limits: SandboxLimits,
    keep: Path,
    judge: Judge,
    hide: tuple[Path, ...] = (),
    readable: tuple[Path, ...] = (),
    stop: threading.Event | None = None,
) -> Tested:
    """Run ``argv`` in the sandbox over ``work``, keep its report (``trial.json``) as ``keep``
    and judge it; a run that failed or wrote no report is its own verdict."""
    try:
        outcome = sandbox.run(argv, work, limits, hide=hide, readable=readable, stop=stop)
    except sandbox.SandboxError as exc:
        return Tested("failed", str(exc))
    result = read_report(work / "trial.json", outcome)
    if isinstance(result, Tested):
        return result
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(json.dumps(result, indent=1, sort_keys=True))
    return judge(result, outcome.isolation)


def figures(report: dict[str, Any]) -> AuditFigures:
    return AuditFigures(
        scenarios=int(report.get("scenarios", 0)),
        pass_rate=float(report.get("overall", 0.0)),
        by_category={k: float(v) for k, v in report.get("by_category", {}).items()},
        failed=tuple(report.get("failures", ())),
        seconds=float(report.get("seconds", 0.0)),
    )


def read_report(out: Path, outcome: SandboxRun) -> dict[str, Any] | Tested:
    """The run's JSON report with its isolation and time added, or ``failed`` with why."""
    try:
        result = json.loads(sandbox.read_written(out).decode("utf-8"))
        if not isinstance(result, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        said = outcome.output.strip().splitlines()
        why = "timed out" if outcome.timed_out else f"exit {outcome.returncode}"
        last = said[-1] if said else "no output"
        return Tested(
            "failed", f"the sandbox run failed ({why}): {last}", isolation=outcome.isolation
        )
    if outcome.returncode != 0 and "invalid" not in result and "error" not in result:
        # A run that died after its report was written (or wrote one it should not have).
        return Tested(
            "failed",
            f"the sandbox run failed (exit {outcome.returncode}) after writing its report",
            isolation=outcome.isolation,
        )
    result["isolation"] = outcome.isolation
    result["sandbox_seconds"] = round(outcome.seconds, 1)
    return result


def _weak(isolation: str) -> list[str]:
    return [] if isolation == "bubblewrap" else ["weak sandbox"]  # see the README


def judge_audit(result: dict[str, Any], isolation: str, tolerance: float) -> Tested:
    """A persona change: refused when it does not load or breaks the brain's checks, flagged
    ``worse`` when the audit's pass rate fell by more than ``tolerance``."""
    if "invalid" in result:  # the persona after it does not load
        return Tested("refused", str(result["invalid"]), isolation=isolation)
    if "error" in result:
        return Tested("failed", str(result["error"]), isolation=isolation)
    try:
        before, after = figures(result["before"]), figures(result["after"])
        broken = [c for c in result["checks"]["after"] if c not in result["checks"]["before"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Tested("failed", f"the sandbox's report is malformed ({exc!r})")
    if broken:
        why = f"the tests of what changed fail: {broken[0]}"
        return Tested("refused", why, before, after, isolation=isolation)
    flags = ["worse"] if after.pass_rate < before.pass_rate - tolerance else []
    return Tested("ready", "", before, after, flags + _weak(isolation), isolation)


def judge_plugin(result: dict[str, Any], isolation: str) -> Tested:
    """A plugin: refused when the host's check refuses it or any event raised."""
    if "invalid" in result:
        return Tested("refused", str(result["invalid"]), isolation=isolation)
    try:
        errors, events = int(result["errors"]), int(result["events"])
        first = [str(e) for e in result.get("first_errors", [])]
    except (KeyError, TypeError, ValueError) as exc:
        return Tested("failed", f"the sandbox's report is malformed ({exc!r})")
    if errors:
        why = f"it failed on {errors} of {events} events: {first[0] if first else '?'}"
        return Tested("refused", why, isolation=isolation)
    return Tested("ready", "", flags=_weak(isolation), isolation=isolation)
