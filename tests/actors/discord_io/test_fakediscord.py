"""FakeDiscord against discord.py's real client: login, gateway, REST, rate limits, interactions.

The client runs on its own thread and event loop (``BotThread``, tests/support/discord), as it
does in the bot's process, so the test thread only uses FakeDiscord's synchronous API.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Protocol

import discord
import discord.gateway
import discord.http
import discord.webhook.async_
import pytest
import yarl
from discord import app_commands

from tests.support.discord.botthread import TOKEN, BotThread, Recorder
from tests.support.fakediscord import FakeDiscord, Intent


def _intents(*, content: bool = True) -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = content
    return intents


def _aim(monkeypatch: pytest.MonkeyPatch, fd: FakeDiscord) -> None:
    # The same three attributes the bot process sets; the webhook Route is http's own class.
    assert discord.webhook.async_.Route is discord.http.Route  # type: ignore[attr-defined]
    monkeypatch.setattr(discord.http.Route, "BASE", fd.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fd.gateway_url)
    )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    with FakeDiscord(TOKEN) as fd:
        _aim(monkeypatch, fd)
        yield fd
        assert fd.errors == []


class StartBot(Protocol):
    """The ``start_bot`` fixture: start a :class:`Recorder` on its own thread."""

    def __call__(
        self, *, intents: discord.Intents | None = None, token: str = TOKEN, ready: bool = True
    ) -> BotThread[Recorder]: ...


@pytest.fixture
def start_bot(fake: FakeDiscord) -> Iterator[StartBot]:
    bots: list[BotThread[Recorder]] = []

    def start(
        *, intents: discord.Intents | None = None, token: str = TOKEN, ready: bool = True
    ) -> BotThread[Recorder]:
        chosen = intents or _intents()
        bot = BotThread(lambda: Recorder(intents=chosen), token).start()
        bots.append(bot)
        if ready:
            bot.wait_ready()
        return bot

    yield start
    for bot in bots:
        bot.stop()


def _contents(bot: BotThread[Recorder]) -> list[str]:
    return [m.content for m in bot.client.seen]


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
    assert fake.intents == _intents().value
    assert fake.connected and fake.identify_count == 1
    assert fake.wait_until(lambda: fake.heartbeats >= 1)
    owner = bot.call(lambda c: c.application_info()).owner
    assert owner.id == fake.owner_id


def test_message_content_depends_on_the_intent_except_in_dms_and_mentions(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    alice = fake.add_user("alice")
    dm = fake.dm_channel(alice)
    with_intent = start_bot(intents=_intents(content=True))
    without = start_bot(intents=_intents(content=False))
    assert fake.intents is not None and not fake.intents & Intent.MESSAGE_CONTENT

    fake.post(fake.general_channel_id, alice, "hello guild")
    fake.post(dm, alice, "hello dm")
    fake.post(fake.general_channel_id, alice, f"<@{fake.bot_id}> hello bot")
    fake.wait_until(lambda: len(with_intent.client.seen) == len(without.client.seen) == 3)

    assert _contents(with_intent) == ["hello guild", "hello dm", f"<@{fake.bot_id}> hello bot"]
    assert _contents(without) == ["", "hello dm", f"<@{fake.bot_id}> hello bot"]
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
    fake.wait_until(lambda: _contents(bot) == ["final answer"])
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
    assert _contents(bot) == ["before the outage"]  # never dispatched, not even on resume
    assert any(r.path == "/gateway-ws" and r.status == 503 for r in fake.requests)


def test_injected_429_is_waited_out_and_the_message_arrives_once(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    bot = start_bot()
    general = fake.general_channel_id
    fake.fail_next("POST", r"/channels/\d+/messages", 429, retry_after=0.3)
    started = time.monotonic()
    bot.call(lambda c: c.get_partial_messageable(general).send("patience"))

    assert time.monotonic() - started >= 0.3
    assert [m["content"] for m in fake.messages(general)] == ["patience"]
    sends = [r.status for r in fake.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert sends == [429, 200]
    assert fake.rate_limited == 1


def test_injected_500_is_retried_by_discord_py(fake: FakeDiscord, start_bot: StartBot) -> None:
    bot = start_bot()
    general = fake.general_channel_id
    fake.fail_next("POST", r"/channels/\d+/messages", 500, html=True)
    bot.call(lambda c: c.get_partial_messageable(general).send("eventually"))

    assert [m["content"] for m in fake.messages(general)] == ["eventually"]
    sends = [r.status for r in fake.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert sends == [500, 200]


def _raw(fd: FakeDiscord, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    request = urllib.request.Request(
        fd.api_base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bot {fd.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, json.loads(error.read() or b"null")


def test_message_bucket_answers_429_with_discord_headers_and_body() -> None:
    with FakeDiscord(TOKEN, message_rate=(2, 1.0)) as fd:
        path = f"/channels/{fd.general_channel_id}/messages"
        first, second, third = (_raw(fd, "POST", path, {"content": str(i)}) for i in range(3))
        other_channel = _raw(
            fd, "POST", f"/channels/{fd.add_channel('other')}/messages", {"content": "x"}
        )

        assert [first[0], second[0], third[0], other_channel[0]] == [200, 200, 429, 200]
        assert first[1]["X-RateLimit-Limit"] == "2" and first[1]["X-RateLimit-Remaining"] == "1"
        assert second[1]["X-RateLimit-Remaining"] == "0"
        assert float(second[1]["X-RateLimit-Reset-After"]) <= 1.0
        assert first[1]["X-RateLimit-Bucket"] == third[1]["X-RateLimit-Bucket"]
        assert third[2]["message"] == "You are being rate limited."
        assert 0 < third[2]["retry_after"] <= 1.0 and third[2]["global"] is False
        assert third[1]["Retry-After"] == "1" and third[1]["Via"]
        assert fd.rate_limited == 1
        assert _raw(fd, "GET", "/nowhere")[2] == {"message": "404: Not Found", "code": 0}
        assert ("GET", "/nowhere", 404) in [(r.method, r.path, r.status) for r in fd.requests]
        assert fd.errors == []


def test_discord_py_respects_the_bucket_without_tripping_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeDiscord(TOKEN, message_rate=(2, 0.5)) as fd:
        _aim(monkeypatch, fd)
        bot = BotThread(lambda: Recorder(intents=_intents())).start()
        try:
            bot.wait_ready()

            async def burst(client: Recorder) -> None:
                channel = client.get_partial_messageable(fd.general_channel_id)
                for i in range(5):
                    await channel.send(f"line {i}")

            started = time.monotonic()
            bot.call(burst)
            assert time.monotonic() - started >= 0.9  # five sends need three 0.5 s windows
            assert [m["content"] for m in fd.messages(fd.general_channel_id)] == [
                f"line {i}" for i in range(5)
            ]
        finally:
            bot.stop()
        assert fd.errors == []


def test_disconnect_resumes_and_replays_what_was_missed(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    alice = fake.add_user("alice")
    bot = start_bot()
    fake.disconnect(4000)
    fake.post(fake.general_channel_id, alice, "during the gap")
    fake.wait_until(lambda: fake.resume_count == 1)
    fake.post(fake.general_channel_id, alice, "after the resume")

    fake.wait_until(lambda: len(bot.client.seen) == 2)
    assert _contents(bot) == ["during the gap", "after the resume"]
    assert fake.identify_count == 1
    fake.wait_until(lambda: bot.client.resumed == 1)


def test_invalid_session_makes_discord_py_identify_again(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    alice = fake.add_user("alice")
    bot = start_bot()
    fake.disconnect(resumable=False)
    fake.wait_until(lambda: fake.identify_count == 2 and fake.connected)
    fake.post(fake.general_channel_id, alice, "new session")

    fake.wait_until(lambda: _contents(bot) == ["new session"])
    assert fake.resume_count == 0


def test_outage_drops_the_gateway_until_it_ends(fake: FakeDiscord, start_bot: StartBot) -> None:
    start_bot()
    fake.outage(0.2)
    assert not fake.online
    fake.wait_until(lambda: fake.online and fake.connected, timeout=10)
    assert fake.resume_count == 1 and fake.identify_count == 1


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


def test_bad_token_fails_login(fake: FakeDiscord, start_bot: StartBot) -> None:
    bot = start_bot(token="not-the-token", ready=False)
    assert bot.done.wait(10)
    assert isinstance(bot.error, discord.LoginFailure)
    assert ("GET", "/users/@me", 401) in [(r.method, r.path, r.status) for r in fake.requests]


def test_unapproved_privileged_intent_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDiscord(TOKEN, approved_intents=0) as fd:
        _aim(monkeypatch, fd)
        bot = BotThread(lambda: Recorder(intents=_intents(content=True))).start()
        try:
            assert bot.done.wait(10)
            assert isinstance(bot.error, discord.PrivilegedIntentsRequired)
        finally:
            bot.stop()


def test_voice_state_request_is_recorded_and_answered(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    lounge = fake.add_voice_channel("Lounge")
    bot = start_bot()

    async def join(client: Recorder) -> None:
        guild = client.get_guild(fake.guild_id)
        assert guild is not None
        await guild.change_voice_state(channel=guild.get_channel(lounge), self_deaf=True)

    bot.call(join)
    fake.wait_until(lambda: fake.voice_state_requests)
    assert fake.voice_state_requests[0]["channel_id"] == lounge
    assert fake.voice_state_requests[0]["self_deaf"] is True

    def bot_in_lounge() -> bool:
        guild = bot.client.get_guild(fake.guild_id)
        voice = guild.me.voice if guild is not None else None
        return voice is not None and voice.channel is not None and voice.channel.id == lounge

    fake.wait_until(bot_in_lounge)


def _command_bot(intents: discord.Intents, log: list[str]) -> Recorder:
    bot = Recorder(intents=intents)

    @bot.tree.command(description="Answer, then follow up")
    async def ping(interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(f"pong {text}", ephemeral=True)
        await interaction.followup.send("and later")

    memory = app_commands.Group(name="memory", description="Long-term memory")

    @memory.command(description="Remember a fact")
    async def remember(interaction: discord.Interaction, fact: str, weight: int = 1) -> None:
        log.append(f"{fact}:{weight}:{interaction.user.id}")
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"noted {fact}")

    @bot.tree.command(description="Too slow for Discord's 3 s rule")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.3)
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as exc:
            log.append(f"late:{exc.code}")

    @memory.command(description="Forget everything")
    async def forget(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("forgotten")

    bot.tree.add_command(memory)
    return bot


def test_app_commands_sync_invoke_and_respond(
    fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = fake.add_user("alice")
    log: list[str] = []
    bot = BotThread(lambda: _command_bot(_intents(), log)).start()
    try:
        bot.wait_ready()
        synced = bot.call(lambda c: c.tree.sync())
        assert sorted(c.name for c in synced) == ["memory", "ping", "slow"]
        assert all(c["id"] for c in fake.commands)

        iid = fake.interact(
            "ping", user_id=alice, channel_id=fake.general_channel_id, options={"text": "hi"}
        )
        done = fake.wait_until(lambda: fake.interaction(iid)["followups"])
        answer = fake.interaction(iid)
        assert answer["response_type"] == 4 and answer["ephemeral"] is True
        assert answer["original"]["content"] == "pong hi"
        assert [f["content"] for f in done] == ["and later"]
        # Ephemeral answers never show in the channel; the public followup does.
        assert [m["content"] for m in fake.messages(fake.general_channel_id)] == ["and later"]

        iid = fake.interact(
            "memory",
            subcommand="remember",
            user_id=alice,
            channel_id=fake.general_channel_id,
            options={"fact": "tea", "weight": 3},
        )
        fake.wait_until(lambda: (fake.interaction(iid)["original"] or {}).get("content"))
        deferred = fake.interaction(iid)
        assert log == [f"tea:3:{alice}"]
        assert deferred["deferred"] is True and deferred["response_type"] == 5
        assert deferred["original"]["content"] == "noted tea" and deferred["followups"] == []

        dm_iid = fake.interact(
            "memory",
            subcommand="forget",
            user_id=alice,
            channel_id=fake.dm_channel(alice),
            guild=False,
        )
        fake.wait_until(lambda: fake.interaction(dm_iid)["original"])
        assert fake.interaction(dm_iid)["original"]["content"] == "forgotten"

        fake.interaction_deadline_s = 0.1
        slow_iid = fake.interact("slow", user_id=alice, channel_id=fake.general_channel_id)
        fake.wait_until(lambda: "late:10062" in log)
        assert fake.interaction(slow_iid)["callbacks"] == []

        with pytest.raises(LookupError, match="not registered"):
            fake.interact("nope", user_id=alice, channel_id=fake.general_channel_id)
        with pytest.raises(ValueError, match="needs a subcommand"):
            fake.interact("memory", user_id=alice, channel_id=fake.general_channel_id)
    finally:
        bot.stop()


def test_button_click_reaches_the_view_callback(fake: FakeDiscord, start_bot: StartBot) -> None:
    alice = fake.add_user("alice")
    bot = start_bot()
    clicked: list[int] = []

    async def send_view(client: Recorder) -> discord.Message:
        view = discord.ui.View(timeout=30)
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label="Yes", custom_id="confirm:yes"
        )

        async def on_click(interaction: discord.Interaction) -> None:
            clicked.append(interaction.user.id)
            await interaction.response.edit_message(content="confirmed", view=None)

        button.callback = on_click  # type: ignore[method-assign]
        view.add_item(button)
        return await client.get_partial_messageable(fake.general_channel_id).send(
            "Sure?", view=view
        )

    message = bot.call(send_view)
    iid = fake.click(message.id, "confirm:yes", user_id=alice)
    fake.wait_until(lambda: fake.interaction(iid)["callbacks"])

    assert clicked == [alice]
    answer = fake.interaction(iid)
    assert answer["response_type"] == 7
    assert answer["original"]["content"] == "confirmed" and answer["original"]["components"] == []
    stored = fake.messages(fake.general_channel_id)[0]
    assert stored["edits"] == 1 and stored["history"] == ["Sure?"]
    with pytest.raises(ValueError, match="no component"):
        fake.click(message.id, "confirm:no", user_id=alice)
