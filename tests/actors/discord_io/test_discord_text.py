"""The Discord actor end to end, text: messages answered once, replies streamed, split, retried
and delivered across crashes and outages.

discord.py's real client in the actor's process, against a Discord-compatible server on loopback
(tests/support/fakediscord), through a real supervisor and bus (tests/support/discord/hexes.py).
Every test here starts real processes: marked slow. The brain is ScriptedBrain
(tests/support/discord/peers.py), a real actor speaking the reply protocol with words the test
chooses.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil
import pytest

from schemas import ChatMessage
from tests.support.discord.hexes import (
    answer_to,
    bodies,
    journal,
    start,
    wait_reply,
    with_dm,
)
from tests.support.discord.peers import script
from tests.support.fakediscord import FakeDiscord
from tests.support.harness import Hex, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


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
    texts = sorted(m.text for m in bodies(hexes[0], ["chat.message.discord"], ChatMessage))
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
    texts = [m.text for m in bodies(hx, ["chat.message.discord"], ChatMessage)]
    assert sorted(texts) == sorted(["first", *(f"while you were out {i}" for i in range(3))])


def test_a_live_message_before_ready_never_hides_one_missed_while_the_actor_was_down(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    # discord.py dispatches messages from the moment READY is parsed, on_ready only once the
    # guilds have arrived, and the replay (which rebuilds where each channel stood from the
    # journal when the snapshot predates it) runs meanwhile. Seen in the chaos soak: a person's
    # next line, live in that gap, moved the channel's last seen message past the one they had
    # sent while the actor was dead, and the catch-up started after both.
    hx, ana, dm = with_dm(fake, hexes)
    wait_reply(fake, dm, fake.post(dm, ana, "first"), "You said: first")
    pid, identified = hx.pid("discord"), fake.identify_count
    os.kill(pid, signal.SIGKILL)
    poll_for(lambda: not fake.connected, 10, what="the gateway to notice the actor's death")
    missed = fake.post(dm, ana, "sent while you were out")
    poll_for(lambda: fake.identify_count > identified, 30, what="the new process's IDENTIFY")
    live = fake.post(dm, ana, "and this one live")
    wait_reply(fake, dm, live, "You said: and this one live", timeout=30)
    wait_reply(fake, dm, missed, "You said: sent while you were out", timeout=30)
    time.sleep(1.0)
    assert len(answer_to(fake, dm, missed["id"])) == 1
    assert len(answer_to(fake, dm, live["id"])) == 1
    texts = [m.text for m in bodies(hx, ["chat.message.discord"], ChatMessage)]
    assert texts == ["first", "sent while you were out", "and this one live"]  # as said


def test_a_message_taken_while_the_broker_is_down_is_answered_once_after_a_sigkill(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    # The actor marks a message seen when it takes it; the durable chat.message waits in its
    # outbox while the broker is down. A snapshot saved then would record it seen while the
    # event dies with the process: after the restart nothing would catch it up.
    hx, ana, dm = with_dm(fake, hexes, settings={"snapshot_interval_s": 0.3})
    wait_reply(fake, dm, fake.post(dm, ana, "first"), "You said: first")
    time.sleep(1.0)  # its snapshot, with the channel's last seen message, is saved
    supervisor = psutil.Process(hx.proc.pid if hx.proc else 0)
    broker, discord = hx.pid("broker"), hx.pid("discord")
    supervisor.suspend()  # so the broker stays down until the test says
    try:
        os.kill(broker, signal.SIGKILL)
        before = len(fake.requests)
        message = fake.post(dm, ana, "while the bus is down")
        poll_for(
            lambda: any(
                r.method == "POST" and r.path.endswith(f"/channels/{dm}/typing")
                for r in fake.requests[before:]
            ),
            10,
            what="the actor to take the message (its typing indicator)",
        )
        time.sleep(1.5)  # several snapshot intervals, with the message seen in the state
        os.kill(discord, signal.SIGKILL)
    finally:
        supervisor.resume()
    wait_reply(fake, dm, message, "You said: while the bus is down", timeout=40)
    time.sleep(1.5)
    assert len(answer_to(fake, dm, message["id"])) == 1
    texts = [m.text for m in bodies(hx, ["chat.message.discord"], ChatMessage)]
    assert sorted(texts) == ["first", "while the bus is down"]


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

    def summary() -> list[ChatMessage]:
        return [
            m
            for m in bodies(hx, ["chat.message.discord"], ChatMessage)
            if "While I was away" in m.text
        ]

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


def test_nothing_hex_posts_or_edits_can_ping_everyone_a_role_or_a_third_person(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    _, ana, dm = with_dm(fake, hexes)
    bo = fake.add_user("bo")
    general = fake.general_channel_id
    before = len(fake.requests)
    # The reply repeats the words: "@everyone", a role and a third person, written by the model
    pinging = fake.post(
        general, ana, f"<@{fake.bot_id}> @everyone @here <@{bo}> <@&4242>", mention_bot=True
    )
    wait_reply(fake, general, pinging, f"You said: @everyone @here <@{bo}> <@&4242>")
    streamed = fake.post(dm, ana, "long 700")  # posted early, then edited as it streams
    wait_reply(fake, dm, streamed, script("long 700")[1])
    writes = [
        r
        for r in fake.requests[before:]
        if "/messages" in r.path and r.method in ("POST", "PATCH") and isinstance(r.body, dict)
    ]
    assert {r.method for r in writes} == {"POST", "PATCH"}, writes
    for r in writes:
        allowed = r.body.get("allowed_mentions")
        assert allowed is not None, (r.method, r.path)
        assert allowed.get("parse") == [] and not allowed.get("users"), (r.path, allowed)
        # replied_user absent is Discord's false: the person answered is not pinged either
        assert not allowed.get("roles") and not allowed.get("replied_user"), (r.path, allowed)
