"""An in-memory Discord for the actor's parts (``actors.discord_io.port.DiscordPort``).

Channels are lists of messages; what the parts post, edit and delete lands there for the test
to read, with every request recorded. A failure is injected per operation (``fail``). Voice calls
and playback are recorded objects a test can make members speak through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actors.discord_io.actor import DiscordActor
from actors.discord_io.names import snowflake_at
from actors.discord_io.port import OnAudio, OnEnd, SeenMessage
from actors.discord_io.replies import Undeliverable
from hexbus.testing import ActorHarness

T = TypeVar("T")

HEX = 4242  # Hex's user id here


@dataclass
class Call:
    """Hex in one voice channel: what it was asked to play, and who it hears."""

    channel_id: int
    connected: bool = True
    played: list[MemorySpeech] = field(default_factory=list)
    on_audio: OnAudio | None = None
    on_end: OnEnd | None = None

    def is_connected(self) -> bool:
        return self.connected

    def is_playing(self) -> bool:
        return bool(self.played) and not self.played[-1].ended

    def play(self, source: Any) -> None:
        self.played.append(source)

    def stop_playing(self) -> None:
        if self.played:
            self.played[-1].ended = True

    async def disconnect(self, *, force: bool = False) -> None:
        self.connected = False

    def hear(self, user_id: int, name: str, pcm16: bytes, *, rate: int = 16000) -> None:
        assert self.on_audio is not None
        self.on_audio(user_id, name, pcm16, rate)

    def stop_hearing(self, user_id: int, name: str, *, left: bool = False) -> None:
        assert self.on_end is not None
        self.on_end(user_id, name, left)


@dataclass
class MemorySpeech:
    """One playback: the PCM fed to it, and how it ended."""

    fed: list[tuple[bytes, int]] = field(default_factory=list)
    ended: bool = False
    finished: bool = False
    cleared: bool = False

    def feed(self, pcm16_mono: bytes, rate: int) -> None:
        self.fed.append((pcm16_mono, rate))

    def finish(self) -> None:
        self.finished = True

    def clear(self) -> None:
        self.cleared = self.ended = True


class MemoryDiscord:
    """Discord as the actor's parts see it, in memory."""

    def __init__(self, me: int = HEX) -> None:
        self.me = me
        self.next_id = snowflake_at(time.time())
        self.channels: defaultdict[int, list[SeenMessage]] = defaultdict(list)
        self.nonces: dict[tuple[int, str], int] = {}
        self.requests: list[tuple[str, int, str]] = []  # (operation, channel id, text)
        self.failures: defaultdict[str, list[BaseException]] = defaultdict(list)
        self.gate: dict[str, asyncio.Event] = {}  # operation → released before it answers
        self.owners_dm: dict[str, int] = {}  # owner id → their DM channel
        self.unreachable: set[str] = set()  # owners whose DMs cannot be opened
        self.suggestions: list[tuple[int, str, str]] = []  # (channel, memory id, text)
        self.proposals: list[tuple[int, int, str]] = []  # (channel, proposal number, text)
        self.voice: dict[int, int] = {}  # voice channel id → people in it
        self.in_calls: dict[int, set[int]] = {}  # voice channel id → who is in it
        self.calls: list[Call] = []
        self.speeches: list[MemorySpeech] = []

    # -- what a test does -------------------------------------------------------------------

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def say(
        self,
        channel_id: int,
        author_id: int,
        content: str,
        *,
        dm: bool = False,
        mentions_me: bool = False,
        reply_to: int | None = None,
        bot: bool = False,
        ordinary: bool = True,
        name: str = "",
    ) -> SeenMessage:
        """A person's message, stored in the channel's history (not delivered: the test does)."""
        replied = next((m for m in self.channels[channel_id] if m.id == reply_to), None)
        message = SeenMessage(
            id=self.new_id(),
            channel_id=channel_id,
            author_id=author_id,
            author_name=name or f"user{author_id}",
            author_bot=bot,
            content=content,
            in_dm=dm,
            mentions_me=mentions_me,
            replies_to_me=replied is not None and replied.author_id == self.me,
            reference_id=reply_to,
            ordinary=ordinary,
        )
        self.channels[channel_id].append(message)
        return message

    def fail(self, operation: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` (post, edit, delete, history...) raise."""
        self.failures[operation].extend([error] * times)

    def hold(self, operation: str) -> asyncio.Event:
        """Calls of ``operation`` wait until the returned event is set."""
        self.gate[operation] = asyncio.Event()
        return self.gate[operation]

    def mine(self, channel_id: int) -> list[SeenMessage]:
        """Hex's messages in the channel, oldest first."""
        return [m for m in self.channels[channel_id] if m.author_id == self.me]

    def texts(self, channel_id: int) -> list[str]:
        return [m.content for m in self.mine(channel_id)]

    def count(self, operation: str) -> int:
        return sum(1 for op, _, _ in self.requests if op == operation)

    async def _request(self, operation: str, channel_id: int, text: str = "") -> None:
        self.requests.append((operation, channel_id, text))
        gate = self.gate.get(operation)
        if gate is not None:
            await gate.wait()
        if self.failures[operation]:
            raise self.failures[operation].pop(0)

    # -- the port -----------------------------------------------------------------------------

    async def send_typing(self, channel_id: int) -> None:
        await self._request("typing", channel_id)

    async def history(
        self, channel_id: int, *, after: int, limit: int
    ) -> AsyncIterator[SeenMessage]:
        await self._request("history", channel_id)
        for message in [m for m in self.channels[channel_id] if m.id > after][:limit]:
            yield message

    async def post(
        self, channel_id: int, text: str, *, reference: int | None = None, nonce: str = ""
    ) -> int:
        await self._request("post", channel_id, text)
        if len(text) > 2000:
            raise AssertionError(f"Discord refuses {len(text)} characters")
        if nonce and (channel_id, nonce) in self.nonces:
            return self.nonces[(channel_id, nonce)]
        message = SeenMessage(
            id=self.new_id(),
            channel_id=channel_id,
            author_id=self.me,
            author_name="Hex",
            author_bot=True,
            content=text,
            in_dm=False,
            mentions_me=False,
            replies_to_me=False,
            reference_id=reference,
        )
        self.channels[channel_id].append(message)
        if nonce:
            self.nonces[(channel_id, nonce)] = message.id
        return message.id

    async def edit(self, channel_id: int, message_id: int, text: str) -> None:
        await self._request("edit", channel_id, text)
        messages = self.channels[channel_id]
        index = next(i for i, m in enumerate(messages) if m.id == message_id)
        if messages[index].author_id != self.me:
            raise Undeliverable("403: Cannot edit a message authored by another user")
        messages[index] = dataclasses.replace(messages[index], content=text)

    async def delete(self, channel_id: int, message_id: int) -> None:
        await self._request("delete", channel_id)
        self.channels[channel_id] = [m for m in self.channels[channel_id] if m.id != message_id]

    async def suggestion_targets(
        self, channels: tuple[str, ...], owners: tuple[str, ...]
    ) -> list[int]:
        if channels:
            return [int(c) for c in channels]
        return [
            self.owners_dm.setdefault(o, self.new_id()) for o in owners if o not in self.unreachable
        ]

    async def dm_channel(self, user_id: int) -> int:
        await self._request("dm", user_id)
        if str(user_id) in self.unreachable:
            raise Undeliverable("403: Cannot send messages to this user")
        return self.owners_dm.setdefault(str(user_id), self.new_id())

    async def post_suggestion(self, channel_id: int, memory_id: str, text: str) -> int:
        await self._request("suggestion", channel_id, text)
        self.suggestions.append((channel_id, memory_id, text))
        return self.new_id()

    async def post_proposal(self, channel_id: int, proposal: int, text: str) -> int:
        await self._request("proposal", channel_id, text)
        self.proposals.append((channel_id, proposal, text))
        return self.new_id()

    def voice_members(self, channel_id: int) -> int | None:
        return self.voice.get(channel_id)

    def in_voice(self, channel_id: int, user_id: int) -> bool:
        return user_id in self.in_calls.get(channel_id, set())

    async def dial(self, channel_id: int, *, timeout: float) -> Call:
        await self._request("dial", channel_id)
        if channel_id not in self.voice:
            raise RuntimeError(f"{channel_id} is not a voice channel")
        call = Call(channel_id)
        self.calls.append(call)
        return call

    def listen(self, call: Any, on_audio: OnAudio, on_end: OnEnd) -> None:
        call.on_audio, call.on_end = on_audio, on_end

    def new_speech(self) -> MemorySpeech:
        speech = MemorySpeech()
        self.speeches.append(speech)
        return speech


async def eventually(
    check: Callable[[], T | Awaitable[T]], timeout: float = 2.0, what: str = ""
) -> T:
    """Let the loop run until ``check()`` is truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last  # type: ignore[no-any-return]
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check} (last: {last!r})")


FAST = {  # no waiting between edits and tries: the tests wait for nothing
    "edit_interval_s": 0.0,
    "backoff_s": 0.001,
    "redeliver_s": 0.05,
    "attempts": 3,
}


def actor_on(discord: MemoryDiscord, **config: Any) -> ActorHarness[DiscordActor]:
    """A DiscordActor in an ActorHarness, its parts built over ``discord`` (no discord.py)."""
    harness = ActorHarness(DiscordActor, {**FAST, **config}, name="discord")
    harness.actor.attach(discord)
    return harness
