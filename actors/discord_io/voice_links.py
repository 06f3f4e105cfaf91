"""Hex in Discord voice channels: joining and leaving, speaking audio.out, hearing each member.

One voice channel per guild. Speech to Hex there is a conversation named
``discord-voice-<channel id>``: each member's audio becomes ``audio.frame`` events of their own
(source ``discord:<guild>:<user>``), so the STT actor keeps speakers apart; replies to that
conversation come back from TTS as ``audio.out`` and are played in the channel. Hex leaves when
nobody but bots is left, and rejoins the channels it was asked into after a reconnect or restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from actors.discord_io.config import DiscordConfig, DiscordState
from actors.discord_io.names import (
    discord_person_id,
    voice_channel_of,
    voice_conversation,
    voice_source,
)
from actors.discord_io.port import DiscordPort, PublishVolatile, Speech, StateChanged, VoiceCall
from schemas import AudioFrame, AudioOut, Speaking

__all__ = ["HEARD_RATE", "LEAVE_TIMEOUT_S", "Link", "VoiceLinks"]

log = structlog.get_logger("actors.discord_io.voice")

HEARD_RATE = 16000  # what members' audio is resampled to: what STT prefers
# On stop the gateway is no longer read, so discord.py's wait for Discord to confirm a leave
# would run to its timeout: the leave itself is sent at once, the confirmation is not awaited.
LEAVE_TIMEOUT_S = 1.0


@dataclass
class Link:
    """Hex's connection to one voice channel."""

    guild_id: int
    channel_id: int
    call: VoiceCall
    speech: Speech | None = None  # what is playing now
    seq: dict[int, int] = field(default_factory=dict)  # user id → their next frame's number


class VoiceLinks:
    """The voice channels Hex is in, one per guild; the guilds' channels it was asked into are
    kept in state (``voice``), so a restart rejoins them."""

    def __init__(
        self,
        config: DiscordConfig,
        state: DiscordState,
        discord: DiscordPort,
        *,
        publish_volatile: PublishVolatile,
        state_changed: StateChanged,
        problem: str = "",
    ) -> None:
        self.config = config
        self.state = state
        self.discord = discord
        self.publish_volatile = publish_volatile
        self.state_changed = state_changed
        self.problem = problem  # why voice cannot work here ("" when it can), said to whoever asks
        self.links: dict[int, Link] = {}  # guild id → its link
        # guild id → done when its dial ends: a leave during a (re)join waits for it, so the
        # link it makes is left too, not kept after "Left the voice channel".
        self.dialing: dict[int, asyncio.Future[None]] = {}

    def linked(self, guild_id: int) -> bool:
        return guild_id in self.links

    def joined(self, guild_id: int | None) -> bool:
        """In a voice channel of that guild, or on the way in."""
        return guild_id is not None and (guild_id in self.links or guild_id in self.dialing)

    async def connect(self, guild_id: int, channel_id: int) -> Link:
        """Connect (or move) to a voice channel and start hearing its members."""
        current = self.links.get(guild_id)
        if current is not None and current.call.is_connected():
            if current.channel_id == channel_id:
                return current
            # Another channel: leave, then join (discord.py 2.7's move_to can stall its UDP
            # reader for 30 s).
            await self.disconnect(guild_id, forget=False)
        dialed = asyncio.get_running_loop().create_future()
        self.dialing[guild_id] = dialed
        try:
            call = await self.discord.dial(channel_id, timeout=self.config.voice_connect_timeout_s)
        finally:
            del self.dialing[guild_id]
            dialed.set_result(None)
        link = Link(guild_id=guild_id, channel_id=channel_id, call=call)

        def on_audio(user_id: int, name: str, pcm16: bytes, rate: int) -> None:
            self.heard(link, user_id, name, pcm16, rate, end=False)

        def on_end(user_id: int, name: str, left: bool) -> None:
            # A member who stopped sending may only be held up: STT hears silence from here
            # until their audio comes back, and judges the pause like any other.
            self.heard(link, user_id, name, b"", HEARD_RATE, end=left, paused=not left)

        self.discord.listen(call, on_audio, on_end)
        self.links[guild_id] = link
        self.state.voice[str(guild_id)] = channel_id
        # No replay could rebuild it, and rejoining after a crash needs it: saved at once.
        self.state_changed(now=True)
        log.info(
            "discord.voice.joined",
            guild=guild_id,
            channel=channel_id,
            members=self.discord.voice_members(channel_id) or 0,
        )
        return link

    def heard(
        self,
        link: Link,
        user_id: int,
        name: str,
        pcm16: bytes,
        rate: int,
        *,
        end: bool,
        paused: bool = False,
    ) -> None:
        """A member's audio (on the loop): one audio.frame of their own stream."""
        seq = link.seq.get(user_id, 0)
        link.seq[user_id] = seq + 1
        frame = AudioFrame(
            source=voice_source(link.guild_id, user_id),
            person_id=discord_person_id(user_id),
            display_name=name,
            platform="voice",
            channel=voice_conversation(link.channel_id),
            rate=rate,
            seq=seq,
            at=time.time(),
            end=end,
            paused=paused,
        )
        self.publish_volatile(frame, key=f"discord.{link.guild_id}.{user_id}", blob=pcm16)

    async def disconnect(self, guild_id: int, *, forget: bool) -> None:
        link = self.links.pop(guild_id, None)
        if forget:
            self.forget(guild_id)
        if link is None:
            return
        try:
            await link.call.disconnect(force=True)
        except Exception as exc:
            log.warning("discord.voice.disconnect_failed", guild=guild_id, error=repr(exc))
        log.info("discord.voice.left", guild=guild_id, channel=link.channel_id)

    def forget(self, guild_id: int | None) -> None:
        """Not to be rejoined: nobody asked Hex into a voice channel there any more."""
        if self.state.voice.pop(str(guild_id), None) is not None:
            self.state_changed(now=True)

    async def leave(self, guild_id: int | None) -> bool:
        """Leave the guild's voice channel for good (not to be rejoined), waiting out a join in
        flight; False if Hex was in none there."""
        joined = self.joined(guild_id)
        if guild_id is None:
            return False
        if guild_id in self.dialing:
            await asyncio.shield(self.dialing[guild_id])
        await self.disconnect(guild_id, forget=True)
        return joined

    async def rejoin(self) -> None:
        """After a reconnect or restart: back into the channels Hex was asked into, if anyone is
        there."""
        if self.problem:
            return
        for guild_id, channel_id in list(self.state.voice.items()):
            link = self.links.get(int(guild_id))
            if link is not None and link.call.is_connected():
                continue
            if not self.discord.voice_members(channel_id):
                self.state.voice.pop(guild_id, None)
                self.state_changed()
                continue
            try:
                await self.connect(int(guild_id), channel_id)
            except Exception as exc:
                log.error(
                    "discord.voice.rejoin_failed",
                    channel=channel_id,
                    error=f"{type(exc).__name__}: {exc}",
                )

    async def on_voice_state(
        self,
        guild_id: int,
        member_id: int,
        before_channel_id: int | None,
        after_channel_id: int | None,
    ) -> None:
        """Someone's voice state changed: leave a channel only bots are left in, and forget a
        link Discord closed when Hex was moved out."""
        me = self.discord.me
        link = self.links.get(guild_id)
        if me and member_id == me:
            if after_channel_id is None and link is not None and not link.call.is_connected():
                await self.disconnect(guild_id, forget=True)
            return
        if link is None or before_channel_id is None or before_channel_id != link.channel_id:
            return
        if not self.discord.voice_members(before_channel_id):
            log.info("discord.voice.channel_empty", channel=link.channel_id)
            await self.disconnect(guild_id, forget=True)

    def call_with(self, user_id: int) -> str:
        """The voice conversation of a call Hex is in with that user now ("" when none)."""
        for link in self.links.values():
            if link.call.is_connected() and self.discord.in_voice(link.channel_id, user_id):
                return voice_conversation(link.channel_id)
        return ""

    def link_for(self, conversation: str) -> Link | None:
        channel_id = voice_channel_of(conversation)
        if channel_id is None:
            return None
        return next((k for k in self.links.values() if k.channel_id == channel_id), None)

    def play(self, event: AudioOut, pcm16: bytes) -> None:
        """Hex's speech for a voice conversation: queued on the channel's playback."""
        link = self.link_for(event.channel)
        if link is None or not pcm16:
            return
        if link.speech is None or link.speech.ended or not link.call.is_playing():
            link.speech = self.discord.new_speech()
            link.speech.feed(pcm16, event.rate)
            if link.call.is_playing():
                link.call.stop_playing()  # (stop() would also stop hearing)
            link.call.play(link.speech)
            return
        link.speech.feed(pcm16, event.rate)

    def speaking(self, event: Speaking) -> None:
        """TTS stopped: let the queue drain (finished) or drop it at once (interrupted: barge-in)."""
        link = self.link_for(event.channel)
        if link is None or link.speech is None or event.state != "stop":
            return
        if event.interrupted:
            link.speech.clear()
        else:
            link.speech.finish()

    async def leave_all(self) -> None:
        """Leave every channel, remembering them for the next start (a graceful stop)."""
        guilds = list(self.links)
        if not guilds:
            return
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self.disconnect(g, forget=False) for g in guilds)),
                LEAVE_TIMEOUT_S,
            )
        except TimeoutError:
            log.info("discord.voice.leave_unconfirmed", guilds=guilds)
