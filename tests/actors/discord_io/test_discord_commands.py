"""The Discord actor end to end, slash commands and buttons, and the real brain and memory
behind them (SmolLM2 through llama.cpp; the other tests use the scripted brain).

discord.py's real client in the actor's process, against a Discord-compatible server on loopback
(tests/support/fakediscord), through a real supervisor and bus (tests/support/discord/hexes.py).
Every test here starts real processes: marked slow.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import msgspec
import pytest

from hexbus.bus import BusClient
from schemas import (
    AuditFigures,
    MemoryChanged,
    MemoryEdit,
    ProposalView,
    QuietMode,
    Reply,
    SelfmodChanged,
    SelfmodDecide,
    SelfmodRequest,
)
from tests.support.discord.hexes import (
    BRAIN,
    answer_to,
    bodies,
    discord_toml,
    journal,
    start,
)
from tests.support.fakediscord import FakeDiscord
from tests.support.harness import FAST_BUS, Hex, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


def test_slash_commands_are_registered_and_owner_only_ones_refuse_others_politely(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    hx = start(fake, extra=BRAIN + actor_toml("counter", "actors.diag.actor:CounterActor"))
    hexes.append(hx)
    names = {c["name"] for c in fake.commands}
    assert {
        "remember",
        "forget",
        "memories",
        "quiet",
        "status",
        "voice",
        "restart",
        "killswitch",
        "capabilities",
        "change",
    } <= names
    ana = fake.add_user("ana")
    general = fake.general_channel_id

    def answered(interaction_id: str) -> dict[str, Any]:
        def text() -> dict[str, Any] | None:
            found = fake.interaction(interaction_id)
            content = (found.get("original") or {}).get("content") or ""
            followups = found.get("followups") or []
            if followups:
                content = followups[-1].get("content") or content
            return {**found, "text": content} if content else None

        return poll_for(text, 15, what=f"an answer to interaction {interaction_id}")

    refused = answered(
        fake.interact("restart", user_id=ana, channel_id=general, options={"actor": "counter"})
    )
    assert "only for Hex's owners" in refused["text"] and refused["ephemeral"]
    assert hx.status()["counter"]["restarts"] == 0
    assert "discord.refused" in hx.log()

    done = answered(
        fake.interact(
            "restart", user_id=fake.owner_id, channel_id=general, options={"actor": "counter"}
        )
    )
    assert "restarting counter" in done["text"].lower()
    poll_for(lambda: hx.status()["counter"]["restarts"] == 1, 10, what="counter restarted")

    status = answered(fake.interact("status", user_id=ana, channel_id=general))
    assert "`brain`: live" in status["text"] and "`discord`: live" in status["text"]

    quiet = answered(
        fake.interact("quiet", user_id=ana, channel_id=general, options={"minutes": 30})
    )
    assert "30 minutes" in quiet["text"]
    quiet_events = [e.body for e in journal(hx, ["brain.quiet"])]
    assert len(quiet_events) == 1 and isinstance(quiet_events[0], QuietMode)
    assert quiet_events[0].target == str(general) and quiet_events[0].until > time.time() + 29 * 60

    # An owner asks her to change (the selfmod actor drafts it); nobody else may.
    change = {"request": "be less sarcastic", "setting": "reactions.teased"}
    nope = answered(fake.interact("change", user_id=ana, channel_id=general, options=change))
    assert "only for Hex's owners" in nope["text"]
    asked = answered(
        fake.interact("change", user_id=fake.owner_id, channel_id=general, options=change)
    )
    assert "The brain drafts the change" in asked["text"] and asked["ephemeral"]
    (request,) = [e.body for e in journal(hx, ["selfmod.request"])]
    assert isinstance(request, SelfmodRequest) and request.owner
    assert (request.text, request.key, request.by, request.conversation) == (
        "be less sarcastic",
        "reactions.teased",
        f"discord:{fake.owner_id}",
        f"discord:{general}",
    )

    # Capabilities: the list is the supervisor's; a person switches what concerns them only.
    listed = answered(fake.interact("capabilities", user_id=ana, channel_id=general))["text"]
    assert "off  `camera`: look through the webcam" in listed and "**on**  `answer`" in listed
    mine = answered(
        fake.interact(
            "capabilities",
            user_id=ana,
            channel_id=general,
            options={"name": "speak_first", "on": False},
        )
    )
    assert mine["text"] == f"speak_first is off for discord:{ana}" and mine["ephemeral"]
    nope = answered(
        fake.interact(
            "capabilities",
            user_id=ana,
            channel_id=general,
            options={"name": "camera", "on": True, "everyone": True},
        )
    )
    assert "only an owner may switch camera for everyone" in nope["text"]
    owners = answered(
        fake.interact(
            "capabilities",
            user_id=fake.owner_id,
            channel_id=general,
            options={"name": "camera", "on": True, "everyone": True},
        )
    )
    assert owners["text"] == "camera is on for everyone"
    table = json.loads(hx.cli("capability", "list", "--json").stdout)
    switches = {c["name"]: c for c in table}
    assert switches["camera"]["enabled"] and switches["camera"]["set_by"] == (
        f"discord:{fake.owner_id}"
    )
    assert switches["speak_first"]["people"] == {f"discord:{ana}": False}

    assert (
        "only for Hex's owners"
        in answered(fake.interact("killswitch", user_id=ana, channel_id=general))["text"]
    )
    thrown = answered(fake.interact("killswitch", user_id=fake.owner_id, channel_id=general))
    assert "Kill switch thrown" in thrown["text"] and "`brain`" in thrown["text"]
    status = hx.status()
    assert status["brain"]["state"] == "stopped" and status["counter"]["state"] == "stopped"
    assert status["discord"]["state"] == "live" and status["broker"]["state"] == "live"
    # The responder still answers (and says the rest is down).
    after = answered(fake.interact("status", user_id=ana, channel_id=general))
    assert "`brain`: stopped" in after["text"]


def test_memory_suggestions_and_her_proposals_get_buttons_only_owners_can_press(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    hx = start(fake)
    hexes.append(hx)
    ana = fake.add_user("ana")

    async def suggest() -> None:
        client = BusClient(hx.endpoints, "suggester")
        client.start()
        await client.publish_durable(
            MemoryChanged(action="suggested", ids=("m_abc123",), detail="Ana keeps bees"),
            key="memory",
        )
        assert await client.flush(10)
        await client.close()

    asyncio.run(suggest())
    owner_dm = fake.dm_channel(fake.owner_id)
    prompt = fake.wait_for_message(owner_dm, lambda m: "Ana keeps bees" in m["content"], timeout=15)
    buttons = [c["custom_id"] for row in prompt["components"] for c in row["components"]]
    assert buttons == ["hex:suggest:approve:m_abc123", "hex:suggest:reject:m_abc123"]

    refused = fake.click(int(prompt["id"]), buttons[0], user_id=ana)
    poll_for(lambda: fake.interaction(refused)["callbacks"], 10, what="the refusal")
    assert not [e for e in journal(hx, ["memory.edit"])]
    approved = fake.click(int(prompt["id"]), buttons[0], user_id=fake.owner_id)
    poll_for(lambda: fake.interaction(approved)["callbacks"], 10, what="the approval")
    edits = [e.body for e in journal(hx, ["memory.edit"])]
    assert len(edits) == 1 and isinstance(edits[0], MemoryEdit)
    assert (
        edits[0].approve is True
        and edits[0].id == "m_abc123"
        and edits[0].by == f"discord:{fake.owner_id}"
    )
    assert "approved" in fake.message(int(prompt["id"]))["content"]

    # Her proposal to change herself, ready after its sandbox run: the same prompt and rule.
    ready = ProposalView(
        id=7,
        status="ready",
        why="my owner asked me to be less formal",
        origin="owner",
        flags=("safety",),
        keys=("style.sentence_shape",),
        diff="--- a/persona.toml\n+++ b/persona.toml\n@@ -1 +1 @@\n-a\n+b\n" + "+x\n" * 900,
        before=AuditFigures(scenarios=110, pass_rate=0.8),
        after=AuditFigures(scenarios=110, pass_rate=0.82),
        sandbox="bubblewrap",
    )

    async def propose() -> None:
        client = BusClient(hx.endpoints, "selfmod")
        client.start()
        for _ in range(2):  # a replay posts nothing more
            await client.publish_durable(SelfmodChanged(proposal=ready, line="ready"))
        assert await client.flush(10)
        await client.close()

    asyncio.run(propose())
    prompt = fake.wait_for_message(owner_dm, lambda m: "proposal 7" in m["content"], timeout=15)
    text = prompt["content"]
    assert len(text) <= 2000 and "0.80 → 0.82" in text and "flags: safety" in text
    assert "hexbus selfmod show 7" in text  # the diff, cut to fit, says where the rest is
    buttons = [c["custom_id"] for row in prompt["components"] for c in row["components"]]
    assert buttons == ["hex:selfmod:approve:7", "hex:selfmod:reject:7"]
    refused = fake.click(int(prompt["id"]), buttons[0], user_id=ana)
    poll_for(lambda: fake.interaction(refused)["callbacks"], 10, what="the refusal")
    assert not journal(hx, ["selfmod.decide"])
    approved = fake.click(int(prompt["id"]), buttons[0], user_id=fake.owner_id)
    poll_for(lambda: fake.interaction(approved)["callbacks"], 10, what="the approval")
    (decided,) = [e.body for e in journal(hx, ["selfmod.decide"])]
    assert isinstance(decided, SelfmodDecide)
    assert (decided.action, decided.id, decided.owner) == ("approve", 7, True)
    assert decided.by == f"discord:{fake.owner_id}"
    time.sleep(0.5)
    assert len([m for m in fake.messages(owner_dm) if "proposal 7" in m["content"]]) == 1

    # What came of it is told where it was asked, each outcome once; a proposal never shown
    # on Discord is not told there.
    applied = msgspec.structs.replace(ready, status="applied", commit="0a1b2c3d4e5f")
    kept = msgspec.structs.replace(applied, status="kept")
    back = msgspec.structs.replace(
        applied, status="rolled_back", reason="the audit fell in its trial (0.82 -> 0.61)"
    )
    elsewhere = msgspec.structs.replace(applied, id=8)
    outcomes = [
        SelfmodChanged(proposal=ready, error="selfmod.apply is off: `hexbus capability enable`"),
        SelfmodChanged(proposal=applied, line="proposal 7 applied (0a1b2c3d4e)"),
        SelfmodChanged(proposal=elsewhere, line="proposal 8 applied (0a1b2c3d4e)"),
        SelfmodChanged(proposal=kept, line="proposal 7 passed its trial and is kept"),
        SelfmodChanged(proposal=back, line="proposal 7 rolled back"),
    ]

    async def tell() -> None:
        client = BusClient(hx.endpoints, "selfmod")
        client.start()
        for event in outcomes:
            # Twice, as new events (the same outcome again is told once); a refusal once: each
            # refused click is an answer of its own.
            for _ in range(1 if event.error else 2):
                await client.publish_durable(event)
            assert await client.flush(10)
            await asyncio.sleep(0.3)  # one after another, as a proposal's life goes
        await client.close()

    asyncio.run(tell())
    told = [
        "⚠️ proposal 7: selfmod.apply is off",
        "✅ proposal 7 applied (0a1b2c3d4e)",
        "✅ proposal 7 passed its trial and is kept",
        "↩️ proposal 7 rolled back: the audit fell in its trial (0.82 -> 0.61)",
    ]

    def said() -> list[str] | None:
        lines = [m["content"] for m in fake.messages(owner_dm) if "proposal" in m["content"]]
        return lines if len(lines) >= 1 + len(told) else None

    lines = poll_for(said, 20, what="the outcomes of proposal 7")
    time.sleep(1.0)
    lines = [m["content"] for m in fake.messages(owner_dm) if "proposal" in m["content"]]
    assert len(lines) == 1 + len(told), lines
    for line, begins in zip(lines[1:], told, strict=True):
        assert line.startswith(begins), (line, begins)


def test_the_real_brain_answers_a_dm_and_memory_commands_reach_the_real_memory(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from tests.support.harness import REPO

    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    stack = actor_toml(
        "brain", "actors.brain.actor:BrainActor", heartbeat_timeout_s=10.0, config={"seed": 7}
    ) + actor_toml("memory", "actors.memory.actor:MemoryActor", heartbeat_timeout_s=20.0)
    hx = Hex(FAST_BUS + stack + discord_toml(fake), root=root).start()
    hexes.append(hx)
    poll_for(lambda: fake.connected, 20, what="the actor's gateway session")
    ana = fake.add_user("ana")
    dm = fake.dm_channel(ana)
    message = fake.post(dm, ana, "Hi Hex! How are you today?")

    def answered() -> list[dict[str, Any]] | None:
        parts = answer_to(fake, dm, message["id"])
        return parts if parts and not parts[-1]["content"].endswith("…") else None

    # The brain dies while it thinks: the durable message waits for its restart, and the reply it then
    # gives is delivered.
    poll_for(lambda: journal(hx, ["chat.message.discord"]), 10, what="the message on the bus")
    os.kill(hx.pid("brain"), signal.SIGKILL)
    parts = poll_for(answered, 120, what="the real brain's reply")
    assert parts[0]["content"].strip()
    replies = bodies(hx, ["chat.reply.discord"], Reply)
    assert len(replies) == 1 and replies[0].text.strip() == "\n".join(p["content"] for p in parts)

    def followup(interaction_id: str) -> str:
        def text() -> str | None:
            found = fake.interaction(interaction_id)
            ups = found.get("followups") or []
            return (
                (ups[-1].get("content") or None)
                if ups
                else (found.get("original") or {}).get("content") or None
            )

        return poll_for(text, 30, what=f"the answer to {interaction_id}")

    general = fake.general_channel_id
    assert "I'll remember that" in followup(
        fake.interact(
            "remember", user_id=ana, channel_id=general, options={"text": "I keep bees on my roof"}
        )
    )

    def found_bees() -> str | None:
        text = followup(
            fake.interact("memories", user_id=ana, channel_id=general, options={"query": "insects"})
        )
        return text if "bees" in text else None

    listing = poll_for(found_bees, 60, interval=1.0, what="the new memory found by meaning")
    assert "page 1 of 1" in listing
    # Another person cannot see or forget Ana's memories.
    bo = fake.add_user("bo")
    assert "bees" not in followup(
        fake.interact("memories", user_id=bo, channel_id=general, options={"query": "insects"})
    )
    assert "no memories of yours" in followup(
        fake.interact("forget", user_id=bo, channel_id=general, options={"query": "bees"})
    )
    forgotten = followup(
        fake.interact("forget", user_id=ana, channel_id=general, options={"query": "bees"})
    )
    assert "Forgotten" in forgotten and "bees" in forgotten
