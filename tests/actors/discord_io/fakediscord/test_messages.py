"""FakeDiscord against discord.py's real client: login, the cache, messages, edits, history, files.

The client runs on its own thread and event loop (``BotThread``, tests/support/discord), as it
does in the bot's process, so the test thread only uses FakeDiscord's synchronous API.
"""

from __future__ import annotations

import io

import discord
import pytest

from tests.support.discord.botthread import Recorder
from tests.support.discord.realclient import StartBot, contents_seen, default_intents
from tests.support.fakediscord import FakeDiscord, Intent


def test_login_ready_and_guild_create_fill_the_client_cache(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    talk = fake.add_channel("talk")
    voice = fake.add_voice_channel("Lounge")
    alice = fake.add_user("alice")
    bot = start_bot()
    client = bot.client

    assert client.user is not None and client.user.id == fake.bot_id
    assert client.application_id == fake.app_id
    guild = client.get_guild(fake.guild_id)
    assert guild is not None
    assert {c.id for c in guild.text_channels} == {fake.general_channel_id, talk}
    assert [c.id for c in guild.voice_channels] == [voice]
    # Without the members intent discord.py caches no other members: ask over REST instead.
    assert guild.member_count == 3
    assert bot.call(lambda c: guild.fetch_member(alice)).name == "alice"
    assert fake.intents == default_intents().value
    assert fake.connected and fake.identify_count == 1
    assert fake.wait_until(lambda: fake.heartbeats >= 1)
    owner = bot.call(lambda c: c.application_info()).owner
    assert owner.id == fake.owner_id


def test_message_content_depends_on_the_intent_except_in_dms_and_mentions(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    alice = fake.add_user("alice")
    dm = fake.dm_channel(alice)
    with_intent = start_bot(intents=default_intents(content=True))
    without = start_bot(intents=default_intents(content=False))
    assert fake.intents is not None and not fake.intents & Intent.MESSAGE_CONTENT

    fake.post(fake.general_channel_id, alice, "hello guild")
    fake.post(dm, alice, "hello dm")
    fake.post(fake.general_channel_id, alice, f"<@{fake.bot_id}> hello bot")
    fake.wait_until(lambda: len(with_intent.client.seen) == len(without.client.seen) == 3)

    assert contents_seen(with_intent) == ["hello guild", "hello dm", f"<@{fake.bot_id}> hello bot"]
    assert contents_seen(without) == ["", "hello dm", f"<@{fake.bot_id}> hello bot"]
    guild_msg, dm_msg, mention = without.client.seen
    assert isinstance(guild_msg.author, discord.Member) and guild_msg.author.id == alice
    assert isinstance(dm_msg.channel, discord.DMChannel) and dm_msg.guild is None
    assert without.client.user in mention.mentions


def test_reply_to_the_bot_carries_reference_and_mention(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    alice = fake.add_user("alice")
    bot = start_bot()
    general = fake.general_channel_id
    sent = bot.call(lambda c: c.get_partial_messageable(general).send("question?"))
    fake.post(general, alice, "answer", reply_to=sent.id, mention_bot=True)
    fake.wait_until(lambda: any(m.content == "answer" for m in bot.client.seen))

    reply = next(m for m in bot.client.seen if m.content == "answer")
    assert reply.reference is not None and reply.reference.message_id == sent.id
    assert isinstance(reply.reference.resolved, discord.Message)
    assert reply.reference.resolved.content == "question?"
    assert bot.client.user in reply.mentions


def test_send_edit_and_typing_are_recorded(fake: FakeDiscord, start_bot: StartBot) -> None:
    bot = start_bot()
    general = fake.general_channel_id

    async def talk(client: Recorder) -> discord.Message:
        channel = client.get_channel(general)
        assert isinstance(channel, discord.TextChannel)
        async with channel.typing():
            message = await channel.send("first draft", nonce=123)
        return await message.edit(content="final answer")

    edited = bot.call(talk)
    assert edited.content == "final answer" and edited.edited_at is not None

    [stored] = fake.messages(general)
    assert stored["content"] == "final answer"
    assert stored["edits"] == 1 and stored["history"] == ["first draft"]
    assert stored["author"]["id"] == str(fake.bot_id)
    typing = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/typing")]
    assert typing and typing[0].status == 204
    # Discord dispatches the bot's own messages back to it, and MESSAGE_UPDATE edits its cache.
    fake.wait_until(lambda: contents_seen(bot) == ["final answer"])
    assert [m.id for m in bot.client.seen] == [edited.id]

    with pytest.raises(discord.HTTPException) as too_long:
        bot.call(lambda c: c.get_partial_messageable(general).send("x" * 2001))
    assert too_long.value.status == 400 and too_long.value.code == 50035


def test_only_the_author_may_edit(fake: FakeDiscord, start_bot: StartBot) -> None:
    alice = fake.add_user("alice")
    bot = start_bot()
    posted = fake.post(fake.general_channel_id, alice, "mine")

    async def edit_alices(client: Recorder) -> None:
        channel = client.get_partial_messageable(fake.general_channel_id)
        await channel.get_partial_message(int(posted["id"])).edit(content="hijacked")

    with pytest.raises(discord.Forbidden) as denied:
        bot.call(edit_alices)
    assert denied.value.code == 50005
    assert fake.messages(fake.general_channel_id)[0]["content"] == "mine"


@pytest.mark.slow
def test_history_after_returns_what_was_posted_while_offline(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    alice = fake.add_user("alice")
    general = fake.general_channel_id
    bot = start_bot()
    marker = fake.post(general, alice, "before the outage")
    fake.wait_until(lambda: len(bot.client.seen) == 1)

    fake.set_online(False)
    fake.wait_until(lambda: not fake.connected)
    missed = [fake.post(general, alice, f"missed {i}")["id"] for i in range(3)]
    # discord.py redials after a random backoff: wait for one refused upgrade while offline.
    fake.wait_until(
        lambda: any(r.path == "/gateway-ws" and r.status == 503 for r in fake.requests), timeout=10
    )
    fake.set_online(True)
    fake.wait_until(lambda: fake.resume_count == 1, timeout=10)

    async def catch_up(client: Recorder) -> list[discord.Message]:
        channel = client.get_partial_messageable(general)
        return [m async for m in channel.history(after=discord.Object(int(marker["id"])))]

    history = bot.call(catch_up)
    assert [str(m.id) for m in history] == missed
    assert [m.content for m in history] == ["missed 0", "missed 1", "missed 2"]
    assert contents_seen(bot) == ["before the outage"]  # never dispatched, not even on resume
    assert any(r.path == "/gateway-ws" and r.status == 503 for r in fake.requests)


def test_attachments_and_dms_opened_by_the_bot(fake: FakeDiscord, start_bot: StartBot) -> None:
    alice = fake.add_user("alice")
    bot = start_bot()
    fake.post(fake.general_channel_id, alice, "see file", files=[("notes.txt", b"tea at five")])
    fake.wait_until(lambda: bot.client.seen)
    [attachment] = bot.client.seen[0].attachments
    assert attachment.filename == "notes.txt"
    assert bot.call(lambda c: attachment.read()) == b"tea at five"

    async def dm_alice(client: Recorder) -> discord.Message:
        user = await client.fetch_user(alice)
        return await user.send("private", file=discord.File(io.BytesIO(b"%PDF"), "a.pdf"))

    sent = bot.call(dm_alice)
    assert isinstance(sent.channel, discord.DMChannel)
    [stored] = fake.messages(fake.dm_channel(alice))
    assert stored["content"] == "private"
    assert [(a["filename"], a["size"]) for a in stored["attachments"]] == [("a.pdf", 4)]
