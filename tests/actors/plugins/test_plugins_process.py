"""A plugin through real processes (supervisor, broker, selfmod with its bubblewrap sandbox, the
plugin host): proposed, tested on the audit's conversations, approved, running in its own
sandboxed process and writing notes for people's messages; the host SIGKILLed and back with the
plugin's data; rolled back and gone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest

from actors.selfmod.draft import unified
from hexbus.bus import BusClient
from schemas import ChatMessage, PluginNote
from tests.support.harness import Hex, HexFactory, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

CONFIG = """
[actors.selfmod]
module = "actors.selfmod.actor:SelfmodActor"
heartbeat_timeout_s = 10.0
[actors.plugins]
module = "actors.plugins.actor:PluginHostActor"
heartbeat_timeout_s = 10.0
"""
COUNTER = """TOPICS = ("chat.message",)


def react(event, hex):
    n = hex.data.get(event["person"], 0) + 1
    hex.data[event["person"]] = n
    if "morning" in event["text"].lower():
        hex.note(f"{event['name']} says good morning (message {n} from them)")
"""


def show(hx: Hex, n: int) -> dict[str, Any] | None:
    out = hx.cli("selfmod", "show", str(n), "--json")
    return dict(json.loads(out.stdout)["proposals"][0]) if out.returncode == 0 else None


def note_for(hx: Hex, text: str, wait: float = 30) -> list[str]:
    """Say ``text`` as Ana; the first plugin note that comes back within ``wait`` seconds."""

    async def run() -> list[str]:
        client = BusClient(hx.endpoints, "listener")
        client.start()
        client.subscribe("plugin.note")
        heard: list[str] = []
        try:
            await asyncio.sleep(0.3)  # the subscription reaches the broker
            said = ChatMessage(
                platform="console", person_id="ana", display_name="Ana", channel="c", text=text
            )
            await client.publish_durable(said, key="console")

            async def collect() -> None:
                async for envelope, _ in client.volatile():
                    if isinstance(envelope.body, PluginNote):
                        heard.append(envelope.body.text)
                        return

            try:
                await asyncio.wait_for(collect(), wait)
            except TimeoutError:
                pass
            return heard
        finally:
            await client.close()

    return asyncio.run(run())


def test_a_plugin_proposed_approved_run_and_rolled_back(hex_factory: HexFactory) -> None:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    hx = hex_factory(CONFIG, root=root).start()
    for name in ("selfmod.propose", "selfmod.plugins", "selfmod.apply"):
        assert hx.cli("capability", "enable", name).returncode == 0
    diff = root / "counter.diff"
    diff.write_text(unified("", COUNTER, "plugins/counter.py", new=True))
    proposed = hx.cli("selfmod", "propose", "--diff", str(diff), "--why", "greet people back")
    assert proposed.returncode == 0, proposed.stderr

    def tested() -> dict[str, Any] | None:
        q = show(hx, 1)
        return q if q is not None and q["status"] != "testing" else None

    p = poll_for(tested, 120, what="the plugin's tests")
    assert p["status"] == "ready" and p["sandbox"] == "bubblewrap", p
    assert p["level"] == "selfmod.plugins" and "capability" in p["flags"]
    assert note_for(hx, "good morning", wait=5) == []  # nothing runs before an owner approves

    assert hx.cli("selfmod", "approve", "1").returncode == 0
    poll_for(lambda: "1 running: counter" in hx.status()["plugins"]["detail"], 60, what="it runs")
    assert note_for(hx, "Good morning!") == ["Ana says good morning (message 1 from them)"]

    # The host killed: back with the plugin and what it kept (rebuilt from the journal since
    # its last snapshot; the note it wrote then is not written again).
    os.kill(hx.pid("plugins"), signal.SIGKILL)
    poll_for(lambda: hx.status()["plugins"]["restarts"] >= 1, 60, what="a restart")
    poll_for(
        lambda: "1 running: counter" in hx.status()["plugins"]["detail"], 60, what="it runs again"
    )
    assert note_for(hx, "morning again") == ["Ana says good morning (message 2 from them)"]

    assert hx.cli("selfmod", "rollback", "1").returncode == 0
    poll_for(lambda: "0 running" in hx.status()["plugins"]["detail"], 60, what="it is gone")
    assert note_for(hx, "good morning?", wait=5) == []
