"""Hex in Discord voice channels: joining and leaving, speaking audio.out, hearing each member.

One voice channel per guild. Speech to Hex there is a conversation named
``discord-voice-<channel id>``: each member's audio becomes ``audio.frame`` events of their own
(source ``discord:<guild>:<user>``), so the STT actor keeps speakers apart; replies to that
conversation come back from TTS as ``audio.out`` and are played in the channel. Hex leaves when
nobody but bots is left, and rejoins the channels it was asked into after a reconnect or restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from schemas import AudioFrame, AudioOut, Speaking

if TYPE_CHECKING:
    import discord

    from actors.discord_io.actor import DiscordActor
    from actors.discord_io.voice import BusAudioSource, UserAudioSink

log = structlog.get_logger("actors.discord_io.voice")

PREFIX = "discord-voice-"


def conversation(channel_id: int) -> str:
    return f"{PREFIX}{channel_id}"


@dataclass
class Link:
    """Hex's connection to one voice channel."""

    guild_id: int
    channel_id: int
    client: Any  # discord.ext.voice_recv.VoiceRecvClient
    sink: UserAudioSink
    source: BusAudioSource | None = None
    seq: dict[int, int] = field(default_factory=dict)


def links(actor: DiscordActor) -> dict[int, Link]:
    found: dict[int, Link] | None = getattr(actor, "voice_links", None)
    if found is None:
        found = actor.voice_links = {}  # type: ignore[attr-defined]
    return found


def humans(channel: discord.VoiceChannel | discord.StageChannel) -> list[discord.Member]:
    return [m for m in channel.members if not m.bot]


async def connect(
    actor: DiscordActor, channel: discord.VoiceChannel | discord.StageChannel
) -> Link:
    """Connect (or move) to ``channel`` and start hearing its members."""
    from discord.ext import voice_recv

    from actors.discord_io.voice import UserAudioSink

    guild = channel.guild
    current = links(actor).get(guild.id)
    if current is not None and current.client.is_connected():
        if current.channel_id == channel.id:
            return current
        # Another channel: leave and join (discord.py 2.7's move_to can stall its UDP reader for 30 s).
        await disconnect(actor, guild.id, forget=False)
    client = await channel.connect(
        cls=voice_recv.VoiceRecvClient,
        timeout=actor.config.voice_connect_timeout_s,
        self_deaf=False,
    )
    link = Link(guild_id=guild.id, channel_id=channel.id, client=client, sink=None)  # type: ignore[arg-type]

    def on_audio(user_id: int, name: str, pcm16: bytes, rate: int) -> None:
        heard(actor, link, user_id, name, pcm16, rate, end=False)

    def on_end(user_id: int, name: str) -> None:
        heard(actor, link, user_id, name, b"", 16000, end=True)

    import asyncio

    link.sink = UserAudioSink(on_audio, asyncio.get_running_loop(), out_rate=16000, on_end=on_end)
    client.listen(link.sink)
    links(actor)[guild.id] = link
    actor.state.voice[str(guild.id)] = channel.id
    actor.state_changed(now=True)  # no replay could rebuild it: rejoin after a crash needs it saved
    log.info(
        "discord.voice.joined", guild=guild.id, channel=channel.id, members=len(humans(channel))
    )
    return link


def heard(
    actor: DiscordActor, link: Link, user_id: int, name: str, pcm16: bytes, rate: int, *, end: bool
) -> None:
    """A member's audio (on the loop): one audio.frame of their own stream."""
    seq = link.seq.get(user_id, 0)
    link.seq[user_id] = seq + 1
    frame = AudioFrame(
        source=f"discord:{link.guild_id}:{user_id}",
        person_id=f"discord:{user_id}",
        display_name=name,
        platform="voice",
        channel=conversation(link.channel_id),
        rate=rate,
        seq=seq,
        at=time.time(),
        end=end,
    )
    actor.bus.publish_volatile(frame, key=f"discord.{link.guild_id}.{user_id}", blob=pcm16)


async def disconnect(actor: DiscordActor, guild_id: int, *, forget: bool) -> None:
    link = links(actor).pop(guild_id, None)
    if forget:
        actor.state.voice.pop(str(guild_id), None)
        actor.state_changed(now=True)
    if link is None:
        return
    try:
        await link.client.disconnect(force=True)
    except Exception as exc:
        log.warning("discord.voice.disconnect_failed", guild=guild_id, error=repr(exc))
    log.info("discord.voice.left", guild=guild_id, channel=link.channel_id)


async def join(actor: DiscordActor, interaction: discord.Interaction[Any]) -> None:
    import discord

    if actor.voice_problem:
        await interaction.response.send_message(
            f"I can't do voice here: {actor.voice_problem}.", ephemeral=True
        )
        return
    member = interaction.user
    voice = getattr(member, "voice", None)
    if interaction.guild is None or voice is None or voice.channel is None:
        await interaction.response.send_message(
            "Join a voice channel first, then ask me again.", ephemeral=True
        )
        return
    await interaction.response.defer(thinking=True)
    try:
        await connect(actor, voice.channel)
    except (
        TimeoutError,
        discord.ClientException,
        discord.HTTPException,
        RuntimeError,
        OSError,
    ) as exc:
        log.error(
            "discord.voice.join_failed",
            channel=voice.channel.id,
            error=f"{type(exc).__name__}: {exc}",
        )
        await interaction.followup.send(
            f"I couldn't join {voice.channel.mention}: {type(exc).__name__}. "
            "It's logged; try again in a moment."
        )
        return
    await interaction.followup.send(f"I'm in {voice.channel.mention}. Talk to me!")


async def leave(actor: DiscordActor, interaction: discord.Interaction[Any]) -> None:
    if interaction.guild is None or interaction.guild.id not in links(actor):
        actor.state.voice.pop(str(interaction.guild_id), None)
        await interaction.response.send_message("I'm not in a voice channel here.", ephemeral=True)
        return
    await disconnect(actor, interaction.guild.id, forget=True)
    await interaction.response.send_message("Left the voice channel.")


async def rejoin(actor: DiscordActor) -> None:
    """After a reconnect or restart: back into the channels Hex was asked into, if anyone is there."""
    import discord

    if actor.voice_problem:
        return
    for guild_id, channel_id in list(actor.state.voice.items()):
        link = links(actor).get(int(guild_id))
        if link is not None and link.client.is_connected():
            continue
        channel = actor.client.get_channel(channel_id)
        if not isinstance(channel, discord.VoiceChannel | discord.StageChannel) or not humans(
            channel
        ):
            actor.state.voice.pop(guild_id, None)
            actor.state_changed()
            continue
        try:
            await connect(actor, channel)
        except Exception as exc:
            log.error(
                "discord.voice.rejoin_failed",
                channel=channel_id,
                error=f"{type(exc).__name__}: {exc}",
            )


async def on_voice_state(
    actor: DiscordActor,
    member: discord.Member,
    before: discord.VoiceState,
    after: discord.VoiceState,
) -> None:
    """Leave a channel nobody (but bots) is in any more; forget it when Hex was moved out by a person."""
    me = actor.client.user
    link = links(actor).get(member.guild.id)
    if me is not None and member.id == me.id:
        if after.channel is None and link is not None and not link.client.is_connected():
            await disconnect(actor, member.guild.id, forget=True)
        return
    if link is None or before.channel is None or before.channel.id != link.channel_id:
        return
    if not humans(before.channel):
        log.info("discord.voice.channel_empty", channel=link.channel_id)
        await disconnect(actor, member.guild.id, forget=True)


def link_for(actor: DiscordActor, channel: str) -> Link | None:
    if not channel.startswith(PREFIX):
        return None
    try:
        channel_id = int(channel[len(PREFIX) :])
    except ValueError:
        return None
    return next((k for k in links(actor).values() if k.channel_id == channel_id), None)


def play(actor: DiscordActor, event: AudioOut, pcm16: bytes) -> None:
    """Hex's speech for a voice conversation: queued on the channel's audio source."""
    from actors.discord_io.voice import BusAudioSource

    link = link_for(actor, event.channel)
    if link is None or not pcm16:
        return
    if link.source is None or link.source.ended or not link.client.is_playing():
        link.source = BusAudioSource()
        link.source.feed(pcm16, event.rate)
        if link.client.is_playing():
            link.client.stop_playing()  # (stop() would also stop hearing)
        link.client.play(link.source)
        return
    link.source.feed(pcm16, event.rate)


def speaking(actor: DiscordActor, event: Speaking) -> None:
    """TTS stopped: let the queue drain (finished) or drop it at once (interrupted: barge-in)."""
    link = link_for(actor, event.channel)
    if link is None or link.source is None or event.state != "stop":
        return
    if event.interrupted:
        link.source.clear()
    else:
        link.source.finish()


async def leave_all(actor: DiscordActor) -> None:
    for guild_id in list(links(actor)):
        await disconnect(actor, guild_id, forget=False)
