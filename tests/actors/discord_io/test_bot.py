"""bot.py against FakeDiscord, in-process: discord.py's real client (on a thread of its own) with
a stand-in host instead of the actor, checking what the actor's parts get from it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import discord.gateway
import discord.http
import pytest

from actors.discord_io.bot import ClientPort, HexBot, build_client
from actors.discord_io.config import DiscordConfig, DiscordState
from actors.discord_io.port import SeenMessage
from actors.discord_io.replies import Undeliverable
from actors.discord_io.suggestions import Suggestions
from actors.discord_io.voice_links import VoiceLinks
from hexbus import RequestTimeout
from hexbus.capabilities import Capabilities
from schemas import Event, MemoryAdd
from tests.support.discord.botthread import TOKEN, BotThread
from tests.support.fakediscord import FakeDiscord
from tests.support.fakediscord.wire import Intent
from tests.support.harness import poll_for

E = TypeVar("E", bound=Event)
T = TypeVar("T")


class Host:
    """What bot.py asks of the actor, recorded."""

    name = "discord"
    bus: Any = None
    live = True

    def __init__(self, config: DiscordConfig) -> None:
        self.config = config
        self.state = DiscordState()
        self.sessions = 0
        self.connects = 0
        self.messages: list[SeenMessage] = []
        self.published: list[Event] = []
        self.voice_links: VoiceLinks
        self.suggestions: Suggestions
        self.capabilities = Capabilities()
        self.presences: list[tuple[int, str]] = []

    def state_changed(self, *, now: bool = False) -> None:
        pass

    def presence(self, user_id: int, status: str) -> None:
        self.presences.append((user_id, status))

    async def publish(self, event: Event, *, key: str = "") -> None:
        self.published.append(event)

    async def request(
        self, event: Event, expect: type[E], *, key: str = "", timeout: float = 2.0
    ) -> E:
        raise RequestTimeout("no memory in this test")

    def on_connect(self) -> None:
        self.connects += 1

    async def on_session(self) -> None:
        self.sessions += 1

    def on_resumed(self) -> None:
        pass

    async def on_message(self, message: SeenMessage) -> None:
        self.messages.append(message)


class Running:
    def __init__(self, fake: FakeDiscord, bot: BotThread[HexBot], host: Host) -> None:
        self.fake, self.bot, self.host = fake, bot, host
        self.port = ClientPort(bot.client)

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()`` on the bot's loop."""
        return self.bot.call(lambda client: make())


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with pytest.MonkeyPatch.context() as patch, FakeDiscord(TOKEN) as fake:
        # build_client aims discord.py at the fake; put its defaults back afterwards.
        patch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
        patch.setattr(
            discord.gateway.DiscordWebSocket,
            "DEFAULT_GATEWAY",
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
        )
        config = DiscordConfig(
            api_base=fake.api_base,
            gateway_url=fake.gateway_url,
            guild_ready_timeout_s=0.05,
            owners=(str(fake.owner_id),),
            presence=True,
        )
        host = Host(config)
        bot = BotThread(lambda: build_client(host)).start()
        bot.wait_ready()
        running = Running(fake, bot, host)
        host.voice_links = VoiceLinks(
            config,
            host.state,
            running.port,
            publish_volatile=lambda *a, **k: None,
            state_changed=host.state_changed,
            problem="voice is off in my configuration",
        )
        host.suggestions = Suggestions(
            config, host.state, running.port, state_changed=lambda **k: None
        )
        try:
            yield running
        finally:
            bot.stop()
        assert fake.errors == []


def test_messages_reach_the_actor_as_what_its_parts_read(running: Running) -> None:
    fake, host, port = running.fake, running.host, running.port
    assert host.connects == 1 and host.sessions == 1 and port.me == fake.bot_id
    ana = fake.add_user("ana")
    dm = fake.dm_channel(ana)
    general = fake.general_channel_id
    fake.post(dm, ana, "in a DM")
    fake.post(general, ana, f"<@{fake.bot_id}> hello", mention_bot=True)
    answer = running.run(lambda: port.post(general, "an answer"))
    fake.post(general, ana, "a follow-up", reply_to=answer)
    fake.post(general, ana, "among ourselves", files=[("notes.txt", b"bees")])

    def from_ana() -> list[SeenMessage]:
        found = [m for m in host.messages if m.author_id == ana]
        return found if len(found) == 4 else []

    by_text = {m.content: m for m in poll_for(from_ana, 10, what="ana's 4 messages")}
    assert by_text["in a DM"].in_dm and not by_text["in a DM"].mentions_me
    assert by_text[f"<@{fake.bot_id}> hello"].mentions_me
    follow_up = by_text["a follow-up"]
    assert follow_up.replies_to_me and follow_up.reference_id == answer and follow_up.ordinary
    plain = by_text["among ourselves"]
    assert not (plain.in_dm or plain.mentions_me or plain.replies_to_me)
    assert [a.filename for a in plain.attachments] == ["notes.txt"]
    assert plain.author_name == "ana" and not plain.author_bot


def test_posts_answer_with_a_reference_once_per_nonce_and_edits_and_deletes_follow(
    running: Running,
) -> None:
    fake, port = running.fake, running.port
    bo = fake.add_user("bo")
    dm = fake.dm_channel(bo)
    asked = int(fake.post(dm, bo, "hi")["id"])
    first = running.run(lambda: port.post(dm, "hello", reference=asked, nonce="reply-1-part-0"))
    again = running.run(lambda: port.post(dm, "hello", reference=asked, nonce="reply-1-part-0"))
    assert first == again
    (mine,) = [m for m in fake.messages(dm) if m["author"]["id"] == str(fake.bot_id)]
    assert mine["message_reference"]["message_id"] == str(asked)
    running.run(lambda: port.edit(dm, first, "hello there"))
    assert fake.message(first)["content"] == "hello there"

    async def history() -> list[SeenMessage]:
        return [m async for m in port.history(dm, after=0, limit=10)]

    assert [m.id for m in running.run(history)] == [asked, first]  # oldest first
    with pytest.raises(Undeliverable):
        running.run(lambda: port.edit(dm, asked, "not mine to edit"))
    with pytest.raises(Undeliverable):
        running.run(lambda: port.post(123456789, "nowhere"))
    running.run(lambda: port.delete(dm, first))
    running.run(lambda: port.delete(dm, first))  # already gone: not an error
    assert [m["id"] for m in fake.messages(dm)] == [str(asked)]


def test_suggestions_go_to_the_owners_dms_with_approve_and_reject_buttons(
    running: Running,
) -> None:
    fake, port = running.fake, running.port
    targets = running.run(lambda: port.suggestion_targets((), (str(fake.owner_id), "1")))
    assert targets == [fake.dm_channel(fake.owner_id)]  # user 1 does not exist: left out
    sent = running.run(lambda: port.post_suggestion(targets[0], "m_1", "Ana keeps bees?"))
    buttons = [
        c["custom_id"] for row in fake.message(sent)["components"] for c in row["components"]
    ]
    assert buttons == ["hex:suggest:approve:m_1", "hex:suggest:reject:m_1"]


def test_slash_commands_are_registered_and_answer_through_the_host(running: Running) -> None:
    fake, host = running.fake, running.host
    names = {c["name"] for c in fake.commands}
    assert {"remember", "forget", "memories", "quiet", "status", "voice"} <= names
    assert {"restart", "killswitch"} <= names
    cy = fake.add_user("cy")
    general = fake.general_channel_id

    def answer(interaction_id: str) -> str:
        def text() -> str | None:
            found = fake.interaction(interaction_id)
            ups = found.get("followups") or []
            if ups:
                return str(ups[-1].get("content") or "") or None
            return (found.get("original") or {}).get("content") or None

        return poll_for(text, 10, what=f"the answer to {interaction_id}")

    remembered = fake.interact(
        "remember", user_id=cy, channel_id=general, options={"text": "I keep bees"}
    )
    assert "I'll remember that" in answer(remembered)
    (added,) = [e for e in host.published if isinstance(e, MemoryAdd)]
    assert added.person_id == f"discord:{cy}" and added.text == "I keep bees"
    asked = fake.interact("memories", user_id=cy, channel_id=general, options={"query": "bees"})
    assert "isn't answering" in answer(asked)
    joined = fake.interact("voice", subcommand="join", user_id=cy, channel_id=general)
    assert "I can't do voice here: voice is off" in answer(joined)
    refused = fake.interact("killswitch", user_id=cy, channel_id=general)
    assert "only for Hex's owners" in answer(refused)


def test_voice_members_counts_people_not_bots_in_voice_channels_only(running: Running) -> None:
    fake, port = running.fake, running.port
    room = fake.add_voice_channel("room")
    dee, robo = fake.add_user("dee"), fake.add_user("robo", bot=True)
    fake.set_voice_state(dee, room)
    fake.set_voice_state(robo, room)
    poll_for(lambda: port.voice_members(room) == 1, 10, what="dee in the room")
    assert port.voice_members(fake.general_channel_id) is None


def test_a_members_status_reaches_the_actor_with_the_presence_intent(running: Running) -> None:
    fake, host = running.fake, running.host
    assert fake.intents is not None and fake.intents & Intent.GUILD_PRESENCES
    bo = fake.add_user("bo")
    # Quick changes, as a phone going in and out of a tunnel makes them: each is told with its
    # own status (discord.py's live member, read by a late handler, had the last one already).
    told = ["dnd", "offline", "idle", "online", "dnd", "offline"]
    fake.set_presence(bo, *told)
    fake.set_presence(bo, "offline")  # no change: not told again
    # 30 s: a loaded machine can miss the fake gateway's heartbeat, and the updates then
    # arrive with the RESUME's replay after discord.py's reconnect backoff.
    try:
        poll_for(lambda: len([p for p in host.presences if p[0] == bo]) >= 6, 30, what="bo")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the host saw {host.presences}") from None
    time.sleep(0.2)  # a seventh, were one told, would be here by now
    assert [s for u, s in host.presences if u == bo] == told
