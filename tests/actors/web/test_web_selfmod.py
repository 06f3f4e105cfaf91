"""The approval panel in a real browser against a real Hex (the brain on the packaged model,
selfmod with its bubblewrap sandbox, the web actor): her proposal appears once its sandbox run
is done, with the audit before and after and its diff; the owner approves it (the brain takes
it) and rolls it back (byte for byte); each decision is journaled naming the person; the owner
asks for a change in plain words and the brain drafts it; a guest may look and not decide."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest

from actors.selfmod.draft import rewrite, unified
from schemas import SelfmodDecide, SelfmodRequest
from tests.support.brain import SELFMOD_TOML, brain_toml
from tests.support.harness import Hex, HexFactory, poll_for
from tests.support.web import artifact, chromium, guest_tab, journaled, page_of, web_toml

pytestmark = [pytest.mark.process, pytest.mark.slow]

CALM = "Calm, plain sentences."


def start(hex_factory: HexFactory) -> Hex:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    brain = brain_toml(root, extra="metadata = false\nmemory = false\nbudgets = { reply = 48 }")
    web = web_toml() + web_toml("guest", person_id="ana", owner=False)
    hx = hex_factory(brain + SELFMOD_TOML + web, root=root).start()
    for name in ("selfmod.propose", "selfmod.apply"):
        on = hx.cli("capability", "enable", name)
        assert on.returncode == 0, on.stderr
    return hx


def until(page: Any, expression: str, timeout: float = 60) -> Any:
    return poll_for(lambda: page.evaluate(expression), timeout, interval=0.05, what=expression)


def test_the_owner_approves_and_rolls_back_her_proposal_on_the_page_and_a_guest_cannot(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    persona = hx.root / "persona.toml"
    shipped = persona.read_text()
    diff = hx.root / "calm.diff"
    diff.write_text(unified(shipped, rewrite(shipped, "style.sentence_shape", CALM)))
    with chromium() as browser:
        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(page_of(hx)["open"])
        page.wait_for_selector("#connection.up")
        page.click("#show-selfmod")
        until(page, "document.getElementById('selfmod-list').textContent.includes('no proposals')")

        # Proposed from a terminal: the open panel hears of it as it goes (testing, ready).
        sent = hx.cli("selfmod", "propose", "--diff", str(diff), "--why", "calmer sentences")
        assert sent.returncode == 0, sent.stderr
        until(page, "hex.selfmod.proposals.some((p) => p.id === 1 && p.status === 'ready')", 300)
        row = page.locator("#selfmod-list .proposal[data-id='1']")
        assert "calmer sentences" in row.inner_text() and "audit" in row.inner_text()
        row.get_by_role("button", name="Show").click()
        until(page, "hex.selfmod.shown !== null")
        shown = page.inner_text("#selfmod-diff")
        assert f'+sentence_shape = "{CALM}"' in shown and "sandbox: bubblewrap" in shown, shown
        page.screenshot(path=artifact("selfmod-ready.png"), full_page=True)

        # Approved (confirmed): applied, and the brain writes it.
        page.fill("#selfmod-decision-note", "yes, calmer")
        row.get_by_role("button", name="Approve").click()
        until(page, "hex.selfmod.changes.length >= 1")
        applied = page.evaluate("hex.selfmod.changes[0]")
        assert not applied["error"] and applied["line"].startswith("proposal 1 applied"), applied
        poll_for(lambda: CALM in persona.read_text() or None, 30, what="the brain's write")
        until(page, "hex.selfmod.proposals.some((p) => p.id === 1 && p.status !== 'ready')")

        # Rolled back from the page: the shipped persona, byte for byte.
        row.get_by_role("button", name="Roll back").click()
        until(page, "hex.selfmod.changes.length >= 2")
        back = page.evaluate("hex.selfmod.changes[1]")
        assert not back["error"] and back["line"] == "proposal 1 rolled back", back
        poll_for(lambda: persona.read_text() == shipped or None, 30, what="the rollback")
        until(page, "hex.selfmod.proposals.some((p) => p.id === 1 && p.status === 'rolled_back')")
        page.screenshot(path=artifact("selfmod-rolled-back.png"), full_page=True)

        # A guest may look, not decide.
        with guest_tab(hx) as tab:
            for op in ("approve", "reject", "rollback", "request"):
                tab.send(
                    json.dumps({"t": "selfmod", "ref": "g", "op": op, "id": 1, "text": "be nice"})
                )
                answer = _answer(tab)
                assert answer["op"] == "refused" and "only an owner" in answer["text"], answer
            tab.send(json.dumps({"t": "selfmod", "ref": "g", "op": "list"}))
            answer = _answer(tab)
            assert answer["op"] == "list", answer
            (listed,) = answer["proposals"]
            assert listed["id"] == 1 and listed["status"] == "rolled_back"

        # Asked in plain words (last: the brain's draft and its sandbox run then load the
        # machine): the selfmod actor takes the owner's wish to the brain.
        page.fill("#selfmod-request", "be less sarcastic when I tease you")
        page.click("#selfmod-request-form button[type=submit]")
        until(page, "hex.selfmod.changes.length >= 3")
        drafting = page.evaluate("hex.selfmod.changes[2]")
        assert drafting["line"].startswith("the brain is drafting a change to reactions.teased")

    decided = [e for e in journaled(hx, ["selfmod.decide"]) if isinstance(e, SelfmodDecide)]
    assert [(d.action, d.id, d.by, d.owner) for d in decided] == [
        ("approve", 1, "owner", True),
        ("rollback", 1, "owner", True),
    ]
    assert decided[0].note == "yes, calmer" and decided[1].note == ""  # one note, one decision
    (asked,) = [e for e in journaled(hx, ["selfmod.request"]) if isinstance(e, SelfmodRequest)]
    assert (asked.text, asked.by, asked.owner, asked.conversation) == (
        "be less sarcastic when I tease you",
        "owner",
        True,
        "web",
    )


def _answer(tab: Any) -> dict[str, Any]:
    """The next selfmod message on a websocket (other traffic skipped)."""
    while True:
        m = json.loads(tab.recv(15))
        if m.get("t") == "selfmod" and m.get("op") != "update":
            return dict(m)


def test_the_open_panel_asks_again_when_selfmod_was_too_busy_to_answer(
    hex_factory: HexFactory,
) -> None:
    """Opened while selfmod cannot answer (stopped here; on a busy machine, its start still
    under way), the panel says so, then fills itself in once selfmod answers: nobody has to
    press Refresh."""
    hx = start(hex_factory)
    with chromium() as browser:
        page = browser.new_page()
        page.goto(page_of(hx)["open"])
        page.wait_for_selector("#connection.up")
        selfmod = hx.pid("selfmod")
        os.kill(selfmod, signal.SIGSTOP)
        try:
            page.click("#show-selfmod")
            until(page, "hex.selfmod.refused.some(m => /did not answer/.test(m.text))", 30)
        finally:  # the supervisor may have killed it by then (no heartbeat): it comes back
            with contextlib.suppress(ProcessLookupError):
                os.kill(selfmod, signal.SIGCONT)
        until(page, "document.getElementById('selfmod-list').textContent.includes('no proposals')")
