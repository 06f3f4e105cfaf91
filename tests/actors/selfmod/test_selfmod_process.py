"""Self-modification through real processes (supervisor, broker, brain on the packaged model,
selfmod with its bubblewrap sandbox): an owner's "be less formal" becomes a drafted proposal,
is tested, approved, used by the brain, rolled back byte for byte and reset to the shipped
persona; SIGKILLs during the sandbox run and during the apply leave no half-applied change."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from actors.selfmod.draft import rewrite, unified
from hexbus.ask import ask
from schemas import PersonaGet, PersonaState
from tests.support.brain import SELFMOD_TOML, brain_toml
from tests.support.harness import Hex, HexFactory, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

SHORT = "[actors.brain.config.budgets]\nreply = 48"  # the audit's checks, sooner


def show(hx: Hex, n: int) -> dict[str, Any] | None:
    out = hx.cli("selfmod", "show", str(n), "--json")
    if out.returncode != 0:
        return None
    return dict(json.loads(out.stdout)["proposals"][0])


def status_of(hx: Hex, n: int, *wanted: str, timeout: float = 240) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        p = show(hx, n)
        return p if p is not None and p["status"] in wanted else None

    try:
        return poll_for(check, timeout, what=f"proposal {n} {wanted}")
    except AssertionError:
        raise AssertionError(f"proposal {n}: {show(hx, n)}\n{hx.log()[-3000:]}") from None


def brain_persona(hx: Hex) -> str:
    """The persona text the brain holds active."""
    state, _ = asyncio.run(ask(hx.endpoints, PersonaGet(), PersonaState, timeout=20, who="brain"))
    return state.text


def trial_pids(hx: Hex) -> set[int]:
    """The sandboxed audit processes of this Hex (bwrap's and the trial's)."""
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or ())
        if "actors.brain.trial" in line and str(hx.data_dir) in line:
            found.add(proc.info["pid"])
    return found


def gone(pids: set[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)


def clean(state: Path) -> bool:
    done = subprocess.run(
        ["git", "-C", str(state), "status", "--porcelain"], capture_output=True, text=True
    )
    return done.returncode == 0 and done.stdout == ""


def start(hex_factory: HexFactory) -> Hex:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    hx = hex_factory(brain_toml(root, extra=SHORT) + SELFMOD_TOML, root=root).start()
    for name in ("selfmod.propose", "selfmod.apply"):
        on = hx.cli("capability", "enable", name)
        assert on.returncode == 0, on.stderr
    return hx


def test_an_owners_request_becomes_a_tested_change_that_can_be_undone(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    shipped = (hx.root / "persona.toml").read_bytes()
    asked = hx.cli("selfmod", "request", "be less formal")
    assert asked.returncode == 0, asked.stderr
    assert "drafting a change to style.sentence_shape" in asked.stdout
    p = status_of(hx, 1, "ready", "refused", "failed")
    assert p["status"] == "ready", p
    assert p["origin"] == "owner" and p["keys"] == ["style.sentence_shape"]
    assert p["before"]["scenarios"] == p["after"]["scenarios"] == 1
    assert p["sandbox"] == "bubblewrap"
    assert (hx.root / "persona.toml").read_bytes() == shipped  # nothing applied yet

    # Nobody but an owner decides: a decision that does not say it is an owner's is refused.
    sent = hx.cli(
        "send", "selfmod.decide", json.dumps({"action": "approve", "id": 1, "by": "mallory"})
    )
    assert sent.returncode == 0, sent.stderr
    assert status_of(hx, 1, "ready")["status"] == "ready"
    assert "only an owner may approve (mallory is not one)" in hx.log()

    approved = hx.cli("selfmod", "approve", "1")
    assert approved.returncode == 0, approved.stderr
    assert "applied" in approved.stdout
    new_shape = poll_for(
        lambda: (hx.root / "persona.toml").read_bytes() != shipped or None,
        30,
        what="the brain's write",
    )
    assert new_shape
    assert brain_persona(hx) == (hx.root / "persona.toml").read_text()
    assert status_of(hx, 1, "applied", "kept", "rolled_back")["commit"]

    undone = hx.cli("selfmod", "rollback", "1")
    assert undone.returncode == 0, undone.stderr
    poll_for(
        lambda: (hx.root / "persona.toml").read_bytes() == shipped or None, 30, what="rollback"
    )
    assert brain_persona(hx).encode() == shipped
    diff = hx.cli("selfmod", "diff", "factory", "HEAD")
    assert diff.returncode == 0 and diff.stdout.strip() == "(no difference)"

    reset = hx.cli("selfmod", "factory-reset")
    assert reset.returncode == 2 and "--yes" in reset.stderr
    reset = hx.cli("selfmod", "factory-reset", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert (hx.root / "persona.toml").read_bytes() == shipped
    assert clean(hx.data_dir / "actors" / "selfmod" / "state")


def brain_budgets(hx: Hex) -> dict[str, Any]:
    """The budgets the running brain process was started with (its HEXBUS_SPEC)."""
    spec = json.loads(psutil.Process(hx.pid("brain")).environ()["HEXBUS_SPEC"])
    return dict(spec["actor"]["config"]["budgets"])


def test_her_settings_once_approved_restart_the_brain_with_them_and_a_rollback_undoes_them(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    assert brain_budgets(hx) == {"reply": 48}
    diff = hx.root / "settings.diff"
    diff.write_text(unified("", "[brain.budgets]\nreply = 32\n", "settings.toml", new=True))
    sent = hx.cli("selfmod", "propose", "--diff", str(diff), "--why", "shorter replies")
    assert sent.returncode == 0, sent.stderr
    p = status_of(hx, 1, "ready", "refused", "failed")
    assert p["status"] == "ready" and p["keys"] == ["settings.toml:brain.budgets.reply"], p

    old = hx.pid("brain")
    approved = hx.cli("selfmod", "approve", "1")
    assert approved.returncode == 0 and "applied" in approved.stdout, approved.stderr
    hx.wait_restarted("brain", old)
    assert brain_budgets(hx) == {"reply": 32}
    # Restarted on her request, not failed: the change stays in its trial (then kept), where a
    # failed brain's restart would roll it back within a second or two.
    watched_until = time.monotonic() + 5
    while time.monotonic() < watched_until:
        assert status_of(hx, 1, "applied", "kept", "rolled_back")["status"] != "rolled_back"
        time.sleep(0.5)
    assert "the brain failed" not in hx.log()

    old = hx.pid("brain")
    undone = hx.cli("selfmod", "rollback", "1")
    assert undone.returncode == 0, undone.stderr
    hx.wait_restarted("brain", old)
    assert brain_budgets(hx) == {"reply": 48}
    assert status_of(hx, 1, "rolled_back")["status"] == "rolled_back"


def test_sigkill_during_the_sandbox_and_during_the_apply_leaves_no_half_change(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    shipped = (hx.root / "persona.toml").read_text()
    change = unified(shipped, rewrite(shipped, "style.sentence_shape", "Calm, plain sentences."))
    patch = hx.root / "change.diff"
    patch.write_text(change)
    proposed = hx.cli("selfmod", "propose", "--diff", str(patch), "--why", "calmer")
    assert proposed.returncode == 0, proposed.stderr
    status_of(hx, 1, "testing")
    old = hx.pid("selfmod")
    poll_for(
        lambda: (hx.data_dir / "actors/selfmod/sandbox/p1/sandbox.log").exists() or None,
        60,
        what="the sandbox running",
    )
    running = poll_for(lambda: trial_pids(hx) or None, 30, what="the sandboxed audit")
    os.kill(old, signal.SIGKILL)
    poll_for(lambda: gone(running), 30, what="the sandbox dying with selfmod")
    hx.wait_restarted("selfmod", old)
    p = status_of(hx, 1, "ready", "failed", "refused")
    assert p["status"] == "ready", p
    state = hx.data_dir / "actors" / "selfmod" / "state"
    assert clean(state) and (hx.root / "persona.toml").read_text() == shipped

    # Approve and kill at once: after the restart it is applied once, or not yet and then once.
    old = hx.pid("selfmod")
    approving = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hexbus.cli",
            "selfmod",
            "approve",
            "1",
            "--run-dir",
            str(hx.run_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.kill(old, signal.SIGKILL)
    try:
        approving.wait(60)
    finally:
        approving.kill()  # a no-op once it has ended
        approving.wait()
    hx.wait_restarted("selfmod", old)
    status_of(hx, 1, "applied", "kept")
    poll_for(
        lambda: "Calm, plain sentences." in (hx.root / "persona.toml").read_text() or None,
        60,
        what="the brain taking the change",
    )
    assert clean(state)
    log = subprocess.run(
        ["git", "-C", str(state), "log", "--format=%s"], capture_output=True, text=True
    ).stdout.splitlines()
    assert sum(line.startswith("p1: ") for line in log) == 1, log

    # The kill switch stops her mid-sandbox, out of her reach: nothing of the run survives it.
    status_of(hx, 1, "kept", "rolled_back")
    again = hx.cli("selfmod", "propose", "--diff", str(patch), "--why", "again")
    assert again.returncode != 0 and "does not apply" in again.stderr  # applied already
    calmer = unified(
        (hx.root / "persona.toml").read_text(),
        rewrite((hx.root / "persona.toml").read_text(), "reactions.greeting", "A nod."),
    )
    patch.write_text(calmer)
    assert hx.cli("selfmod", "propose", "--diff", str(patch), "--why", "terser").returncode == 0
    running = poll_for(lambda: trial_pids(hx) or None, 60, what="the second sandboxed audit")
    stopped = hx.cli("killswitch")
    assert stopped.returncode == 0, stopped.stderr
    poll_for(lambda: gone(running), 30, what="the sandbox stopped by the kill switch")
    hx.wait_state({"selfmod": "stopped"}, timeout=30)
