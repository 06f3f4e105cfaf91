"""The Discord actor end to end: discord.py's real client in the actor's process, against a
Discord-compatible server on loopback (fakediscord.py: gateway, REST, interactions), through a
real supervisor and bus.

The brain is ScriptedBrain (peers.py), a real actor speaking the reply protocol with words the test
chooses, except in the test marked slow, where the real brain (SmolLM2 through llama.cpp) answers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hexbus.bus import BusClient
from hexbus.codec import Envelope
from schemas import ChatMessage, MemoryChanged, MemoryEdit, QuietMode
from tests.actors.discord_io.fakediscord import FakeDiscord, Intent
from tests.actors.discord_io.peers import script
from tests.support.harness import FAST_BUS, Hex, actor_toml, poll_for

pytestmark = pytest.mark.process

BRAIN = actor_toml(
    "brain",
    "tests.actors.discord_io.peers:ScriptedBrain",
    config={"chunks": 8, "chunk_interval_s": 0.15},
)


def discord_toml(fake: FakeDiscord, *, token: str | None = "test-token", **config: Any) -> str:
    settings = {
        "api_base": fake.api_base,
        "gateway_url": fake.gateway_url,
        "guild_ready_timeout_s": 0.1,
        "edit_interval_s": 0.4,
        "backoff_s": 0.2,
        "redeliver_s": 1.0,
        "ready_timeout_s": 15.0,
        "owners": [str(fake.owner_id)],
        **config,
    }
    toml = actor_toml(
        "discord",
        "actors.discord_io.actor:DiscordActor",
        heartbeat_timeout_s=10.0,
        backoff_initial_s=0.1,
        config=settings,
    )
    if token is not None:
        toml += f'[actors.discord.env]\nDISCORD_TOKEN = "{token}"\n'
    return toml


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord(token="test-token") as server:
        yield server


def start(fake: FakeDiscord, extra: str = BRAIN, **config: Any) -> Hex:
    hx = Hex(FAST_BUS + extra + discord_toml(fake, **config)).start()
    poll_for(lambda: fake.connected, 20, what="the actor's gateway session")
    return hx


@pytest.fixture
def hexes() -> Iterator[list[Hex]]:
    made: list[Hex] = []
    yield made
    for hx in made:
        hx.cleanup()


def with_dm(fake: FakeDiscord, hexes: list[Hex], **config: Any) -> tuple[Hex, int, int]:
    """A started Hex, a person (ana) and her DM channel with Hex."""
    hx = start(fake, **config)
    hexes.append(hx)
    ana = fake.add_user("ana")
    return hx, ana, fake.dm_channel(ana)


def from_bot(fake: FakeDiscord, channel: int) -> list[dict[str, Any]]:
    return [m for m in fake.messages(channel) if m["author"]["id"] == str(fake.bot_id)]


def answer_to(fake: FakeDiscord, channel: int, message_id: str) -> list[dict[str, Any]]:
    """The bot's messages replying to one message (a reply's parts), oldest first."""
    return [
        m
        for m in from_bot(fake, channel)
        if (m.get("message_reference") or {}).get("message_id") == message_id
    ]


def journal(hx: Hex, prefixes: list[str]) -> list[Envelope]:
    """Every durable event on ``prefixes`` journaled so far."""

    async def read() -> list[Envelope]:
        client = BusClient(hx.endpoints, f"reader-{time.monotonic_ns()}")
        client.start()
        feed = client.durable(prefixes, after=0, wait_ms=100)
        found: list[Envelope] = []
        try:
            async for envelope, _ in feed:
                if envelope is not None:
                    found.append(envelope)
                elif feed.live:
                    break
        finally:
            await client.close()
        return found

    return asyncio.run(asyncio.wait_for(read(), 20))


def wait_reply(
    fake: FakeDiscord, channel: int, message: dict[str, Any], text: str, timeout: float = 20
) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        parts = answer_to(fake, channel, message["id"])
        shown = "\n".join(p["content"] for p in parts)
        return parts if parts and shown == text else None

    return poll_for(done, timeout, what=f"the reply {text[:40]!r}")


# -- text -----------------------------------------------------------------------------------


def test_a_dm_is_acknowledged_at_once_and_answered_by_one_message_edited_as_it_streams(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    _, ana, dm = with_dm(fake, hexes)
    before = len(fake.requests)
    message = fake.post(dm, ana, "long 700")
    parts = wait_reply(fake, dm, message, script("long 700")[1])
    typing = [
        r
        for r in fake.requests[before:]
        if r.method == "POST" and r.path.endswith(f"/channels/{dm}/typing")
    ]
    assert typing, (
        f"no typing indicator: {[(r.method, r.path, r.status) for r in fake.requests[before:]]}"
    )
    assert len(parts) == 1
    assert parts[0]["edits"] >= 2, parts[0]  # streamed: posted early, then edited as chunks came
    assert any(
        h.endswith(" …") for h in parts[0]["history"]
    )  # the streaming mark was shown, then removed
    assert fake.rate_limited == 0  # edits paced under Discord's limit: none refused
    chats = [e.body for e in journal(hexes[0], ["chat.message.discord"])]
    assert len(chats) == 1 and isinstance(chats[0], ChatMessage)
    assert (
        chats[0].person_id == f"discord:{ana}" and chats[0].text == "long 700" and chats[0].direct
    )


def test_a_long_reply_is_split_under_2000_characters_with_its_code_block_whole(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    _, ana, dm = with_dm(fake, hexes)
    message = fake.post(dm, ana, "code 60")
    _, text = script("code 60")
    block = text[text.index("```") : text.rindex("```") + 3]

    def complete() -> list[dict[str, Any]] | None:
        parts = answer_to(fake, dm, message["id"])
        return parts if parts and parts[-1]["content"].endswith("Done.") else None

    parts = poll_for(complete, 30, what="the whole reply")
    assert all(len(p["content"]) <= 2000 for p in parts)
    assert any(block in p["content"] for p in parts), "the code block was cut"
    long_message = fake.post(dm, ana, "long 4500")
    _, long_text = script("long 4500")

    def three_parts() -> list[dict[str, Any]] | None:
        parts = answer_to(fake, dm, long_message["id"])
        return parts if len(parts) >= 3 and parts[-1]["content"].endswith(long_text[-30:]) else None

    parts = poll_for(three_parts, 30, what="a 3-part reply")
    assert [len(p["content"]) <= 2000 for p in parts] == [True] * len(parts)
    assert " ".join(p["content"] for p in parts).split() == long_text.split()


def test_who_is_answered_dms_mentions_replies_to_hex_and_configured_channels_not_others_or_bots(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    lounge = fake.add_channel("lounge")
    hexes.append(start(fake, channels=[str(lounge)]))
    ana, robo = fake.add_user("ana"), fake.add_user("robo", bot=True)
    general = fake.general_channel_id
    ignored = fake.post(general, ana, "talking among ourselves")
    by_bot = fake.post(general, robo, f"<@{fake.bot_id}> beep", mention_bot=True)
    mention = fake.post(general, ana, f"<@{fake.bot_id}> hello", mention_bot=True)
    wait_reply(fake, general, mention, "You said: hello")
    in_lounge = fake.post(lounge, ana, "anyone here")
    wait_reply(fake, lounge, in_lounge, "You said: anyone here")
    hex_message = answer_to(fake, general, mention["id"])[0]
    follow_up = fake.post(general, ana, "and another thing", reply_to=int(hex_message["id"]))
    wait_reply(fake, general, follow_up, "You said: and another thing")
    time.sleep(1.0)
    assert not answer_to(fake, general, ignored["id"]) and not answer_to(
        fake, general, by_bot["id"]
    )
    texts = sorted(e.body.text for e in journal(hexes[0], ["chat.message.discord"]))  # type: ignore[union-attr]
    assert texts == ["and another thing", "anyone here", "hello"]


def test_429_and_5xx_from_discord_are_waited_out_and_the_reply_arrives_once(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    _, ana, dm = with_dm(fake, hexes)
    fake.fail_next("POST", rf"/channels/{dm}/messages", 429, retry_after=0.5)
    fake.fail_next("PATCH", rf"/channels/{dm}/messages/\d+", 502, times=2)
    message = fake.post(dm, ana, "are you there")
    parts = wait_reply(fake, dm, message, "You said: are you there")
    assert len(parts) == 1
    posts = [
        r
        for r in fake.requests
        if r.method == "POST" and r.path.endswith(f"/channels/{dm}/messages")
    ]
    assert [r.status for r in posts][:2] == [429, 200], posts
    # 503 is not retried by discord.py itself: the actor's own retry covers it.
    fake.fail_next("POST", rf"/channels/{dm}/messages", 503, times=2)
    second = fake.post(dm, ana, "still there")
    assert len(wait_reply(fake, dm, second, "You said: still there")) == 1


def test_missed_messages_are_fetched_after_a_sigkill_and_answered_once(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    hx, ana, dm = with_dm(fake, hexes)
    first = fake.post(dm, ana, "first")
    wait_reply(fake, dm, first, "You said: first")
    pid = hx.pid("discord")
    os.kill(pid, signal.SIGKILL)
    poll_for(lambda: not fake.connected, 10, what="the gateway to notice the actor's death")
    missed = [fake.post(dm, ana, f"while you were out {i}") for i in range(3)]
    poll_for(
        lambda: (
            hx.status().get("discord", {}).get("pid") not in (None, pid)
            and hx.status()["discord"]["state"] == "live"
        ),
        30,
        what="the actor back",
    )
    for i, message in enumerate(missed):
        wait_reply(fake, dm, message, f"You said: while you were out {i}", timeout=30)
    time.sleep(1.5)
    assert len(answer_to(fake, dm, first["id"])) == 1  # the one answered before the kill: not again
    for message in missed:
        assert len(answer_to(fake, dm, message["id"])) == 1
    texts = [e.body.text for e in journal(hx, ["chat.message.discord"])]  # type: ignore[union-attr]
    assert sorted(texts) == sorted(["first", *(f"while you were out {i}" for i in range(3))])


def test_messages_sent_during_a_gateway_outage_are_answered_once_after_it(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    hx, ana, dm = with_dm(fake, hexes)
    wait_reply(fake, dm, fake.post(dm, ana, "before"), "You said: before")
    sessions = fake.identify_count + fake.resume_count
    fake.set_online(False)  # the gateway drops; REST stays up
    poll_for(lambda: not fake.connected, 10, what="the gateway down")
    during = fake.post(dm, ana, "during the outage")  # stored, never dispatched
    fake.set_online(True)
    poll_for(
        lambda: fake.identify_count + fake.resume_count > sessions and fake.connected,
        30,
        what="discord.py back on the gateway",
    )
    wait_reply(fake, dm, during, "You said: during the outage", timeout=30)
    after = fake.post(dm, ana, "after")
    wait_reply(fake, dm, after, "You said: after")
    time.sleep(1.0)
    assert len(answer_to(fake, dm, during["id"])) == 1
    assert hx.status()["discord"]["restarts"] == 0  # ridden out, not crashed


def test_too_many_missed_messages_become_one_summary_answered_once(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    hx, ana, dm = with_dm(fake, hexes, catch_up_limit=3)
    wait_reply(fake, dm, fake.post(dm, ana, "hi"), "You said: hi")
    pid = hx.pid("discord")
    os.kill(pid, signal.SIGKILL)
    poll_for(lambda: not fake.connected, 10, what="the gateway to notice the actor's death")
    missed = [fake.post(dm, ana, f"note {i}") for i in range(6)]
    poll_for(lambda: fake.connected, 30, what="the actor back on the gateway")

    def summary() -> list[Any]:
        return [
            e.body
            for e in journal(hx, ["chat.message.discord"])
            if "While I was away" in e.body.text
        ]  # type: ignore[union-attr]

    found = poll_for(summary, 20, what="one summary message")
    assert len(found) == 1 and "6 messages" in found[0].text and "note 5" in found[0].text
    poll_for(lambda: answer_to(fake, dm, missed[-1]["id"]), 20, what="the summary answered")
    time.sleep(1.0)
    assert all(not answer_to(fake, dm, m["id"]) for m in missed[:-1])


def test_a_reply_that_arrives_while_the_actor_is_down_is_delivered_after_its_restart_once(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    hx, ana, dm = with_dm(fake, hexes)
    message = fake.post(dm, ana, "slow 2 remember this")
    poll_for(lambda: answer_to(fake, dm, message["id"]), 20, what="the reply's first streamed part")
    os.kill(
        hx.pid("discord"), signal.SIGKILL
    )  # mid-stream: the final reply is journaled while it is down
    wait_reply(fake, dm, message, "You said: remember this", timeout=40)
    time.sleep(1.5)
    assert len(answer_to(fake, dm, message["id"])) == 1  # adopted and edited, not posted again


def test_no_token_is_one_clear_line_in_status_and_no_restart_loop(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    hx = Hex(FAST_BUS + discord_toml(fake, token=None)).start(wait_live=False)
    hexes.append(hx)
    status = hx.wait_state({"discord": "failed"}, timeout=30)
    reason = status["discord"]["reason"]
    assert "DISCORD_TOKEN is not set" in reason and ".env" in reason, reason
    time.sleep(1.0)
    assert hx.status()["discord"]["restarts"] == 0


def test_the_token_may_come_from_a_dot_env_file_beside_supervisor_toml(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    (root / ".env").write_text('# Hex secrets\nDISCORD_TOKEN="test-token"\n')
    hx = Hex(FAST_BUS + BRAIN + discord_toml(fake, token=None), root=root).start()
    hexes.append(hx)
    poll_for(lambda: fake.connected, 20, what="a gateway session with the token from .env")
    ana = fake.add_user("ana")
    dm = fake.dm_channel(ana)
    wait_reply(fake, dm, fake.post(dm, ana, "hello"), "You said: hello")
    assert "test-token" not in hx.log()


def test_a_wrong_token_is_reported_as_refused(fake: FakeDiscord, hexes: list[Hex]) -> None:
    hx = Hex(FAST_BUS + discord_toml(fake, token="not-the-token")).start(wait_live=False)
    hexes.append(hx)
    status = hx.wait_state({"discord": "failed"}, timeout=30)
    assert "refused the token" in status["discord"]["reason"]
    assert "not-the-token" not in hx.log()  # never log a secret


def test_missing_privileged_intents_name_the_portal_switch(hexes: list[Hex]) -> None:
    with FakeDiscord(token="test-token", approved_intents=Intent.GUILD_MEMBERS) as fake:
        hx = Hex(FAST_BUS + discord_toml(fake)).start(wait_live=False)
        hexes.append(hx)
        status = hx.wait_state({"discord": "failed"}, timeout=30)
        assert "MESSAGE CONTENT" in status["discord"]["reason"], status["discord"]


def test_the_intents_hex_asks_for(fake: FakeDiscord, hexes: list[Hex]) -> None:
    hexes.append(start(fake))
    wanted = (
        Intent.GUILDS
        | Intent.GUILD_MEMBERS
        | Intent.GUILD_VOICE_STATES
        | Intent.GUILD_MESSAGES
        | Intent.DIRECT_MESSAGES
        | Intent.MESSAGE_CONTENT
    )
    assert fake.intents is not None and fake.intents & wanted == wanted
    assert not fake.intents & Intent.GUILD_PRESENCES  # privileged and not needed: not asked for


# -- slash commands ---------------------------------------------------------------------------


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


def test_memory_suggestions_get_buttons_only_owners_can_press(
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


# -- with the real brain and memory -------------------------------------------------------------


@pytest.mark.slow
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
    replies = [e.body for e in journal(hx, ["chat.reply.discord"])]
    assert len(replies) == 1 and replies[0].text.strip() == "\n".join(p["content"] for p in parts)  # type: ignore[union-attr]

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


# -- voice ------------------------------------------------------------------------------------------


def tone(hz: float, seconds: float, rate: int) -> Any:
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(samples: Any, rate: int) -> float:
    import numpy as np

    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def test_voice_join_plays_audio_out_as_opus_and_hears_each_member_as_their_own_stream(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    import numpy as np

    from hexbus.pcm import from_pcm16, to_pcm16
    from schemas import AudioFrame, AudioOut, Speaking

    hx = start(fake, ca_file=fake.voice_ca_file, voice_connect_timeout_s=10.0)
    hexes.append(hx)
    ana, bo = fake.add_user("ana"), fake.add_user("bo")
    room = fake.add_voice_channel("room")
    general = fake.general_channel_id
    outsider = fake.add_user("cy")
    not_in_voice = fake.interact("voice", subcommand="join", user_id=outsider, channel_id=general)
    poll_for(
        lambda: fake.interaction(not_in_voice)["callbacks"],
        10,
        what="the answer to a join from outside voice",
    )
    assert "Join a voice channel first" in fake.interaction(not_in_voice)["original"]["content"]
    fake.set_voice_state(ana, room)
    fake.set_voice_state(bo, room)
    joined = fake.interact("voice", subcommand="join", user_id=ana, channel_id=general)

    def join_answer() -> str | None:
        return (fake.interaction(joined).get("original") or {}).get("content") or None

    assert "I'm in" in poll_for(join_answer, 20, what="the bot in the voice channel")
    connection = fake.voice_connection
    assert connection is not None and connection["ready"] and connection["channel_id"] == room
    conversation = f"discord-voice-{room}"
    frames: dict[str, list[tuple[AudioFrame, bytes]]] = {}

    async def talk() -> None:
        client = BusClient(hx.endpoints, "voice-tester")
        client.start()
        client.subscribe("audio.frame")
        await asyncio.sleep(0.3)

        async def collect() -> None:
            async for envelope, blob in client.volatile():
                if isinstance(envelope.body, AudioFrame):
                    frames.setdefault(envelope.body.source, []).append((envelope.body, blob or b""))

        collector = asyncio.create_task(collect())
        # Hex speaks: what TTS publishes for a reply to this conversation, 100 ms chunks at 24 kHz.
        speech = to_pcm16(tone(440, 1.0, 24_000))
        for seq in range(10):
            chunk = speech[seq * 4800 : (seq + 1) * 4800]
            client.publish_volatile(
                AudioOut(
                    channel=conversation,
                    platform="voice",
                    reply_to="r1",
                    sentence=0,
                    seq=seq,
                    rate=24_000,
                    last=seq == 9,
                ),
                key=conversation,
                blob=chunk,
            )
            await asyncio.sleep(0.05)
        client.publish_volatile(
            Speaking(channel=conversation, reply_to="r1", state="stop"), key=conversation
        )
        # Two members talk at once; each is heard as their own stream.
        stereo = {
            user: to_pcm16(np.repeat(tone(hz, 1.0, 48_000), 2))
            for user, hz in ((ana, 300), (bo, 700))
        }
        spoken = [fake.speak(user, room, pcm) for user, pcm in stereo.items()]
        await asyncio.gather(*(asyncio.wrap_future(s) for s in spoken))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            any(f.end for f, _ in frames.get(f"discord:{fake.guild_id}:{u}", [])) for u in (ana, bo)
        ):
            await asyncio.sleep(0.1)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await client.close()

    asyncio.run(asyncio.wait_for(talk(), 60))

    # Hex's voice reached Discord as 20 ms opus frames (each decodes to 960 stereo samples) of the tone.
    packets = poll_for(
        lambda: fake.voice_received(room) if len(fake.voice_received(room)) >= 50 else None,
        10,
        what="Hex's audio at the voice server",
    )
    pcm = np.frombuffer(fake.voice_pcm(room), dtype="<i2").astype(np.float32).reshape(-1, 2)
    assert len(pcm) == 960 * len(packets)
    assert abs(dominant_hz(pcm[:, 0] / 32768, 48_000) - 440) < 10
    # Each member: their own source, person and 16 kHz stream, their own tone, then an end marker.
    for user, hz in ((ana, 300), (bo, 700)):
        stream = frames[f"discord:{fake.guild_id}:{user}"]
        assert {f.person_id for f, _ in stream} == {f"discord:{user}"}
        assert {f.channel for f, _ in stream} == {conversation} and {f.rate for f, _ in stream} == {
            16_000
        }
        assert [f.seq for f, _ in stream] == list(range(len(stream)))
        assert stream[-1][0].end
        audio = from_pcm16(b"".join(blob for _, blob in stream))
        assert 0.8 * 16_000 <= len(audio) <= 1.3 * 16_000
        assert abs(dominant_hz(audio, 16_000) - hz) < 10, (user, hz)
    assert len(frames) == 2  # Hex's own voice is not one of the streams

    # A SIGKILL while in voice: the actor comes back into the same channel by itself.
    old = fake.voice_connection
    os.kill(hx.pid("discord"), signal.SIGKILL)
    poll_for(
        lambda: (
            (c := fake.voice_connection) is not None
            and c is not old
            and c["connected"]
            and c["ready"]
            and c["ssrc"] != old["ssrc"]
        ),
        40,
        what="Hex back in the voice channel after its restart",
    )

    # /voice leave, then /voice join again.
    left = fake.interact("voice", subcommand="leave", user_id=bo, channel_id=general)
    poll_for(
        lambda: "Left" in ((fake.interaction(left).get("original") or {}).get("content") or ""),
        15,
        what="the answer to /voice leave",
    )
    poll_for(
        lambda: not (fake.voice_connection or {}).get("connected"),
        15,
        what="Hex out of the channel",
    )
    again = fake.interact("voice", subcommand="join", user_id=bo, channel_id=general)
    poll_for(
        lambda: "I'm in" in ((fake.interaction(again).get("original") or {}).get("content") or ""),
        20,
        what="Hex back in the channel",
    )

    # Everyone leaves: Hex leaves too, and forgets the channel.
    fake.leave_voice(ana)
    fake.leave_voice(bo)
    poll_for(
        lambda: not (fake.voice_connection or {}).get("connected"),
        15,
        what="Hex to leave the empty channel",
    )


@pytest.mark.slow
def test_a_member_speaks_in_voice_and_hex_answers_aloud_in_the_channel(
    fake: FakeDiscord, hexes: list[Hex], tmp_path: Any
) -> None:
    """The whole voice loop through Discord: a member's speech (real opus over the loopback voice
    server) → audio.frame → STT (Whisper) → the real brain → TTS (Kokoro) → audio.out → Hex's
    voice back in the channel."""
    import shutil
    import tempfile
    from pathlib import Path

    import numpy as np
    import soxr  # type: ignore[import-untyped]

    from hexbus.pcm import to_pcm16
    from schemas import Utterance
    from tests.support.harness import REPO
    from tests.support.speech import espeak

    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    stack = (
        actor_toml(
            "brain", "actors.brain.actor:BrainActor", heartbeat_timeout_s=10.0, config={"seed": 7}
        )
        + actor_toml("stt", "actors.stt.actor:SttActor", heartbeat_timeout_s=30.0)
        + actor_toml("tts", "actors.tts.actor:TtsActor", heartbeat_timeout_s=30.0)
    )
    hx = Hex(FAST_BUS + stack + discord_toml(fake, ca_file=fake.voice_ca_file), root=root).start()
    hexes.append(hx)
    poll_for(lambda: fake.connected, 20, what="the actor's gateway session")
    ana = fake.add_user("ana")
    room = fake.add_voice_channel("room")
    fake.set_voice_state(ana, room)
    joined = fake.interact(
        "voice", subcommand="join", user_id=ana, channel_id=fake.general_channel_id
    )
    poll_for(
        lambda: "I'm in" in ((fake.interaction(joined).get("original") or {}).get("content") or ""),
        20,
        what="Hex in the voice channel",
    )

    said = "What is the capital of France?"
    speech = espeak(said, tmp_path, rate=48_000, speed=150, trim=False)
    padded = np.concatenate([speech, np.zeros(9600, np.float32)])
    before = len(fake.voice_received(room))
    fake.speak(ana, room, to_pcm16(np.repeat(padded, 2))).result(30)

    conversation = f"discord-voice-{room}"
    finals = poll_for(
        lambda: [
            e.body
            for e in journal(hx, ["stt.final"])
            if isinstance(e.body, Utterance) and e.body.text
        ],
        60,
        what="the transcript",
    )
    assert finals[0].person_id == f"discord:{ana}" and finals[0].channel == conversation
    assert "france" in finals[0].text.lower()
    reply = poll_for(
        lambda: [e.body for e in journal(hx, ["chat.reply.voice"])], 120, what="the brain's reply"
    )
    assert reply[0].channel == conversation and reply[0].text.strip()

    sizes: list[int] = []

    def spoken() -> Any:  # Hex's audio since the member spoke, once it has stopped growing
        pcm = (
            np.frombuffer(fake.voice_pcm(room), dtype="<i2")
            .astype(np.float32)
            .reshape(-1, 2)[before * 960 :]
        )
        sizes.append(len(pcm))
        still = len(sizes) > 6 and len(set(sizes[-6:])) == 1
        loud = len(pcm) > 48_000 and np.sqrt(np.mean((pcm[:, 0] / 32768) ** 2)) > 0.01
        return [pcm] if still and loud else None

    heard = poll_for(spoken, 120, interval=0.5, what="Hex's spoken reply in the voice channel")[0]
    # What reached the channel is speech Whisper can read back: the reply's words, spoken.
    from actors.stt.whisper import Whisper, WhisperConfig

    whisper = Whisper(WhisperConfig(language="en"))  # Kokoro's packaged voice is accented (README)
    mono16 = np.asarray(soxr.resample(heard[:, 0] / 32768, 48_000, 16_000), dtype=np.float32)
    result = whisper.transcribe(mono16)
    assert result is not None and set(result.text.lower().split()) & set(
        reply[0].text.lower().split()
    )
