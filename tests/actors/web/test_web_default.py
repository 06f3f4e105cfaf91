"""The page against Hex as it ships: the default supervisor.toml (echo, brain, memory, STT, TTS,
Discord without a token, the web actor), only its port made free for the test. A line typed in
the page is answered, memory finds it, the usage panel names the backend, the runtime panel
shows every actor with Discord's reason."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import REPO, HexFactory, poll_for
from tests.support.web import artifact, chromium, page_of

pytestmark = [pytest.mark.process, pytest.mark.slow]

WAIT_S = 90


def until(page: Any, expression: str, timeout: float = WAIT_S) -> Any:
    return poll_for(lambda: page.evaluate(expression), timeout, interval=0.1, what=expression)


def test_the_page_works_on_the_default_deployment(hex_factory: HexFactory) -> None:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    shipped = (REPO / "supervisor.toml").read_text(encoding="utf-8")
    assert "port = 8765" in shipped
    hx = hex_factory(shipped.replace("port = 8765", "port = 0", 1), root=root).start(
        wait_live=False
    )
    hx.wait_state({a: "live" for a in ("brain", "memory", "stt", "tts", "web", "echo")}, 120)
    with chromium() as browser:
        page = browser.new_page()
        page.goto(page_of(hx)["open"])
        page.wait_for_selector("#connection.up")
        page.fill("#input", "My tortoise Gustav is eighty years old.")
        page.press("#input", "Enter")
        until(page, "document.querySelectorAll('.msg.hex[data-status]').length >= 1")
        page.click("#show-memory")
        page.fill("#memory-query", "tortoise Gustav")
        page.click("#memory-search button[type=submit]")
        until(page, "hex.memory.hits.some(h => h.text.includes('Gustav'))", 30)
        page.click("#show-usage")
        until(page, "hex.usage.last && hex.usage.last.brain.backends.length > 0", 30)
        assert page.evaluate("hex.usage.last.brain.backends[0].name") == "llamacpp"
        page.click("#show-runtime")
        page.wait_for_selector('#actors tr[data-actor="memory"][data-state="live"]')
        discord = page.locator('#actors tr[data-actor="discord"] td.detail').inner_text()
        assert "DISCORD_TOKEN" in discord, discord  # not running, and why
        page.screenshot(path=artifact("default-deployment.png"), full_page=True)
