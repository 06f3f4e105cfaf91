"""The persona panel in a real browser against a real Hex (the brain on the packaged model, the
web actor): persona.toml shown, a bad edit refused at its line, a good one recorded, a diff, a
rollback, the audit twice with its drift; every request journaled with who made it; a guest
refused."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from schemas import ControlTaken
from tests.support.brain import brain_toml
from tests.support.harness import Hex, HexFactory, poll_for
from tests.support.web import artifact, chromium, guest_tab, journaled, page_of, web_toml

pytestmark = [pytest.mark.process, pytest.mark.slow]

WAIT_S = 60


def start(hex_factory: HexFactory) -> tuple[Hex, Path]:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    brain = brain_toml(root, extra="metadata = false\nmemory = false\nbudgets = { reply = 24 }")
    web = web_toml() + web_toml("guest", person_id="ana", owner=False)
    return hex_factory(brain + web, root=root).start(), root / "persona.toml"


def until(page: Any, expression: str, timeout: float = WAIT_S) -> Any:
    return poll_for(lambda: page.evaluate(expression), timeout, interval=0.05, what=expression)


def test_the_owner_edits_diffs_rolls_back_and_audits_the_persona_and_a_guest_cannot(
    hex_factory: HexFactory,
) -> None:
    hx, persona_file = start(hex_factory)
    shipped = persona_file.read_text(encoding="utf-8")
    with chromium() as browser:
        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(page_of(hx)["open"])
        page.wait_for_selector("#connection.up")
        page.click("#show-persona")
        until(page, "hex.persona.state && hex.persona.state.text.length > 0")
        assert page.input_value("#persona-text") == shipped

        # A wrong type is refused, and the page points at its line.
        lines = shipped.splitlines()
        number = next(i for i, line in enumerate(lines, 1) if line.startswith("summary ="))
        lines[number - 1] = "summary = 42"
        page.fill("#persona-text", "\n".join(lines) + "\n")
        page.click("#persona-save button[type=submit]")
        until(page, "hex.persona.changes.length >= 1")
        refused = page.evaluate("hex.persona.changes[0]")
        assert refused["error"] and refused["line"] == number, refused
        assert page.inner_text("#persona-error").startswith(f"line {number}: ")
        selected = page.evaluate(
            "(() => { const t = document.getElementById('persona-text');"
            " return t.value.slice(t.selectionStart, t.selectionEnd); })()"
        )
        assert selected == "summary = 42"
        page.screenshot(path=artifact("persona-error.png"), full_page=True)
        assert persona_file.read_text(encoding="utf-8") == shipped  # nothing written

        # A good edit becomes version 2, on disk and in use.
        lines[number - 1] = 'summary = "a chaotic goblin who loves spoons"'
        page.fill("#persona-text", "\n".join(lines) + "\n")
        page.fill("#persona-save-note", "spoons")
        page.click("#persona-save button[type=submit]")
        until(page, "hex.persona.changes.length >= 2")
        saved = page.evaluate("hex.persona.changes[1]")
        assert saved["version"] == 2 and saved["note"] == "edited by owner: spoons", saved
        assert "loves spoons" in persona_file.read_text(encoding="utf-8")
        until(page, "hex.persona.state.active === 2")

        # The diff of version 1 against the active one.
        page.select_option("#persona-versions", "1")
        page.click("#persona-diff-button")
        until(page, "hex.persona.diff !== null")
        diff = page.evaluate("hex.persona.diff.lines")
        assert f"-{shipped.splitlines()[number - 1]}" in diff
        assert '+summary = "a chaotic goblin who loves spoons"' in diff
        page.screenshot(path=artifact("persona-diff.png"), full_page=True)

        # Rolled back to version 1 (confirmed): a new version 3 with the shipped text.
        page.select_option("#persona-versions", "1")
        page.click("#persona-rollback")
        until(page, "hex.persona.changes.length >= 3")
        rolled = page.evaluate("hex.persona.changes[2]")
        assert rolled["version"] == 3 and rolled["note"] == "rollback to 1", rolled
        assert persona_file.read_text(encoding="utf-8") == shipped
        until(page, "hex.persona.state.active === 3 && hex.persona.state.version === 3")

        # The audit, twice: a report, then its drift against the first.
        page.fill("#persona-audit-limit", "2")
        for n in (1, 2):
            page.click("#persona-audit button[type=submit]")
            until(page, f"hex.persona.audits.length >= {n}", 180)
        first, second = page.evaluate("hex.persona.audits")
        assert not first["error"] and first["summary"]["scenarios"] == 2, first
        assert second["previous"] == first["report"] and "drift" in second["drift"], second
        assert page.evaluate("hex.persona.progress.done") == 2
        assert "audit of 2 scenarios" in page.inner_text("#persona-audit-report")
        page.screenshot(path=artifact("persona-audit.png"), full_page=True)

    # A guest may look, not change.
    with guest_tab(hx) as tab:
        for op in (
            {"op": "save", "text": shipped},
            {"op": "rollback", "version": 2},
            {"op": "audit"},
        ):
            tab.send(json.dumps({"t": "persona", "ref": "g", **op}))
            answer = _answer(tab)
            assert answer["op"] == "refused" and "only an owner" in answer["text"], answer
        tab.send(json.dumps({"t": "persona", "ref": "g", "op": "get"}))
        assert _answer(tab)["text"] == shipped

    records = [e for e in journaled(hx, ["sys.audit"]) if isinstance(e, ControlTaken)]
    mine = [(r.action, r.by, r.ok) for r in records]
    # The bad edit is journaled as refused, once the brain said so; the good one as done.
    assert mine.count(("persona.edit", "owner", False)) == 1
    assert mine.count(("persona.edit", "owner", True)) == 1
    assert ("persona.rollback", "owner", True) in mine
    assert mine.count(("persona.audit", "owner", True)) == 2
    assert {("persona.edit", "ana", False), ("persona.audit", "ana", False)} <= set(mine)


def _answer(tab: Any) -> dict[str, Any]:
    while True:
        message = json.loads(tab.recv(20))
        if message.get("t") == "persona":
            return dict(message)
