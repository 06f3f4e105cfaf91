"""FakeDiscord against discord.py's real client: app commands and component interactions.

The client runs on its own thread and event loop (``BotThread``, tests/support/discord), as it
does in the bot's process, so the test thread only uses FakeDiscord's synchronous API.
"""

from __future__ import annotations

import asyncio

import discord
import pytest
from discord import app_commands

from tests.support.discord.botthread import BotThread, Recorder
from tests.support.discord.realclient import StartBot, default_intents
from tests.support.fakediscord import FakeDiscord


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
    bot = BotThread(lambda: _command_bot(default_intents(), log)).start()
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
