"""The Discord actor: Hex's text (and voice) on Discord, with a responder nothing can block.

discord.py's client runs on this actor's own event loop. What people write becomes durable
``chat.message.discord`` events; the typing indicator and a ``chat.ack`` go out the moment a
message is seen. The brain's reply streams back as volatile chunks and one durable
``chat.reply.discord``: the chunks edit one Discord message as they come, the final reply
corrects and completes it (split over 2,000 characters, code blocks whole). The loop itself does
nothing slow: no model, no disk scan, no waiting for the brain. Discord requests run in tasks of
their own, and a reply is kept in the actor's state until Discord has it, so a crash, a
restart of the brain, a 429 or a 5xx never loses one.

Missed messages: the last Discord message id seen in each watched channel (configured channels
and DMs) is kept in state. When the gateway comes back after a crash or an outage (a new
session: a resumed one replays what it missed itself), what was sent meanwhile is fetched from
history and answered once, or, past ``catch_up_limit``, answered as one summary.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
import structlog

from actors.discord_io.replies import Shown, Undeliverable, show, with_retries
from actors.discord_io.text import strip_mention
from hexbus import Actor, ActorUnusable, on
from hexbus.codec import derived_id
from schemas import (
    Attachment,
    AudioOut,
    ChatAck,
    ChatMessage,
    MemoryChanged,
    Notice,
    Reply,
    ReplyChunk,
    Speaking,
)

if TYPE_CHECKING:
    import discord

log = structlog.get_logger("actors.discord_io")

DELIVERED_KEPT = 2000  # reply ids remembered as delivered, so a replayed reply is not posted twice
ASKED_KEPT = (
    2000  # message event ids remembered with their Discord message, to answer with a reference
)
SETUP_FIXES = "README.md, 'Discord' has the steps"


class DiscordConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token_env: str = (
        "DISCORD_TOKEN"  # the environment variable (or .env line) holding the bot token
    )
    api_base: str = ""  # "" = Discord itself; a compatible server's ".../api/v10" (tests, a proxy)
    gateway_url: str = ""  # that server's gateway websocket ("" = Discord's)
    guild_ready_timeout_s: float = 2.0  # discord.py waits this long for guilds before READY counts
    ca_file: str = (
        ""  # extra CA certificates (PEM) to trust: a proxy's, or the loopback test server's
    )
    voice_connect_timeout_s: float = 20.0
    owners: tuple[str, ...] = ()  # Discord user ids allowed /restart, /killswitch and approvals
    channels: tuple[str, ...] = ()  # channel ids answered without a mention (DMs always are)
    answer_bots: bool = (
        False  # other bots' messages are ignored unless this is set (never Hex's own)
    )
    guild_id: str = (
        ""  # sync slash commands to this guild at once (global commands can take an hour)
    )
    sync_commands: bool = True
    edit_interval_s: float = 1.2  # a streamed reply's message is edited at most this often
    typing_s: float = (
        120.0  # the typing indicator is kept up this long at most while the brain thinks
    )
    attempts: int = 5  # tries per Discord request on top of discord.py's own 429/5xx handling
    backoff_s: float = 1.0  # first pause between tries, doubled each time
    redeliver_s: float = 30.0  # a reply still undelivered after its tries is tried again this often
    catch_up_limit: int = (
        10  # missed messages per channel answered one by one; more become one summary
    )
    catch_up_max_age_h: float = 24.0  # older missed messages are not answered
    suggestions_to: tuple[
        str, ...
    ] = ()  # channel ids for memory suggestions ("" = the owners' DMs)
    voice: bool = True
    ready_timeout_s: float = (
        30.0  # setup waits this long for the gateway before going live regardless
    )


class Asked(msgspec.Struct, frozen=True, kw_only=True):
    """A person's Discord message that became a chat.message: where to answer it."""

    channel_id: int
    message_id: int


class Pending(msgspec.Struct, kw_only=True):
    """A final reply Discord does not have whole yet."""

    reply_to: str
    channel_id: int
    reference: int | None
    text: str
    message_ids: list[
        int
    ] = []  # parts already posted (adopted after a crash, or posted by this incarnation)


class DiscordState(msgspec.Struct, kw_only=True):
    last_seen: dict[str, int] = {}  # watched channel id → newest Discord message id seen there
    asked: dict[str, Asked] = {}  # chat.message event id → its Discord message
    pending: dict[str, Pending] = {}  # reply_to → a final reply not yet shown whole
    delivered: list[str] = []  # reply_to ids shown whole (newest last, bounded)
    voice: dict[str, int] = {}  # guild id → the voice channel Hex was asked to be in
    suggestions: dict[
        str, list[int]
    ] = {}  # memory id → (channel id, message id) of its approval prompt
    commands_digest: str = (
        ""  # the slash commands last registered, so unchanged ones are not re-synced
    )


def read_token(env_name: str, folders: list[Path]) -> str | None:
    """The bot token from the environment, else from a ``.env`` in one of ``folders``."""
    value = os.environ.get(env_name, "").strip()
    if value:
        return value
    from dotenv import dotenv_values

    for folder in folders:
        path = folder / ".env"
        if path.is_file():
            found = (dotenv_values(path).get(env_name) or "").strip()
            if found:
                return found
    return None


def person_of(user_id: int) -> str:
    return f"discord:{user_id}"


class DiscordActor(Actor[DiscordConfig, DiscordState]):
    """Hex on Discord: messages in, streamed replies out, slash commands, voice."""

    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.message.discord",  # its own: the journal, not the snapshot, is what says what was taken
        "chat.reply.discord",
        "chat.reply.chunk.discord",
        "chat.notice.discord",
        "memory.changed",
        "audio.out",
        "tts.speaking",
    )
    config_type = DiscordConfig
    state_type = DiscordState

    async def setup(self) -> None:
        try:
            import discord
        except ImportError as exc:
            raise ActorUnusable(
                f"discord.py is not installed ({exc}): pip install -e '.[discord]'"
            ) from None
        token = read_token(self.config.token_env, [self.config_dir, Path.cwd()])
        if token is None:
            raise ActorUnusable(
                f"{self.config.token_env} is not set: create a bot (README.md, 'Discord'), put "
                f"{self.config.token_env}=... in .env beside supervisor.toml, then `hexbus restart {self.name}`"
            )
        from hexbus.log import add_secret

        add_secret(token)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.shown: dict[str, Shown] = {}
        self.typing: dict[int, asyncio.Task[None]] = {}
        self.channel_locks: defaultdict[int, asyncio.Lock] = defaultdict(
            asyncio.Lock
        )  # one post at a time
        self.delivered = OrderedDict((r, None) for r in self.state.delivered)
        self.ready = asyncio.Event()
        self.fatal: ActorUnusable | None = None
        self.voice_problem = (
            self.check_voice() if self.config.voice else "voice is off in my configuration"
        )
        from actors.discord_io.bot import build_client

        self.client = build_client(self)
        try:
            await self.client.login(token)
        except discord.LoginFailure:
            raise ActorUnusable(
                f"Discord refused the token in {self.config.token_env} (401): reset it in the developer "
                f"portal's Bot page and update .env ({SETUP_FIXES})"
            ) from None
        except (discord.HTTPException, OSError) as exc:
            # Discord unreachable or failing: discord.py keeps trying to connect; the bus side runs meanwhile.
            log.warning(
                "discord.login_failed",
                error=f"{type(exc).__name__}: {exc}",
                hint="retrying in the background",
            )
        self.connection = asyncio.get_running_loop().create_task(
            self._connect(token), name="discord-connect"
        )
        ready = asyncio.get_running_loop().create_task(self.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self.connection},
            timeout=self.config.ready_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        ready.cancel()
        if self.fatal is not None:
            raise self.fatal
        if not done:
            log.warning(
                "discord.not_ready_yet",
                waited_s=self.config.ready_timeout_s,
                hint="the gateway is unreachable; discord.py keeps reconnecting",
            )

    def check_voice(self) -> str:
        """Why voice cannot work here ("" when it can): libopus and the voice packages are needed."""
        try:
            import discord.opus

            from actors.discord_io import voice  # noqa: F401  (voice-recv, davey, soxr)
        except ImportError as exc:
            problem = f"voice packages missing ({exc}): pip install -e '.[discord]'"
        else:
            if discord.opus.is_loaded() or discord.opus._load_default():
                return ""
            problem = "libopus is not installed: apt-get install libopus0 (Debian/Ubuntu), then restart me"
        log.warning("discord.voice_unavailable", problem=problem)
        return problem

    async def _connect(self, token: str) -> None:
        import discord

        while True:
            try:
                if not self.client.is_ready() and self.client.http.token is None:
                    await self.client.login(token)
                await self.client.connect(reconnect=True)
                return
            except discord.PrivilegedIntentsRequired:
                self.give_up(
                    "Discord refused the bot's intents: enable MESSAGE CONTENT and SERVER MEMBERS under "
                    f"Privileged Gateway Intents on the developer portal's Bot page ({SETUP_FIXES})"
                )
                return
            except discord.LoginFailure:
                self.give_up(
                    f"Discord refused the token in {self.config.token_env}: reset it and update .env "
                    f"({SETUP_FIXES})"
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "discord.connect_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=5
                )
                await asyncio.sleep(5)

    def give_up(self, reason: str) -> None:
        """Discord refused for a reason only a person can fix. During setup it becomes the actor's
        one-line status; later (a token revoked while running) the actor stops, and the next start
        reports it the same way instead of running deaf."""
        self.fatal = ActorUnusable(reason)
        if self.ready.is_set():
            log.error("discord.refused_by_discord", reason=reason)
            signal.raise_signal(signal.SIGTERM)

    async def teardown(self) -> None:
        for task in list(self.typing.values()) + list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.typing.values(), *self.tasks, return_exceptions=True)
        from actors.discord_io.voice_link import leave_all

        await leave_all(self)
        await self.client.close()
        self.connection.cancel()
        await asyncio.gather(self.connection, return_exceptions=True)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("discord.task_failed", task=task.get_name(), error=repr(task.exception()))

    # -- Discord → bus -------------------------------------------------------------------

    def wants(self, message: discord.Message) -> bool:
        """Whether Hex answers this message: DMs, mentions, replies to Hex, configured channels."""
        import discord

        me = self.client.user
        if me is None or message.author.id == me.id:
            return False
        if message.author.bot and not self.config.answer_bots:
            return False
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return False
        if isinstance(message.channel, discord.DMChannel) or message.guild is None:
            return True
        if me in message.mentions or str(message.channel.id) in self.config.channels:
            return True
        ref = message.reference
        resolved = ref.resolved if ref is not None else None
        return isinstance(resolved, discord.Message) and resolved.author.id == me.id

    def watched(self, message: discord.Message) -> bool:
        return message.guild is None or str(message.channel.id) in self.config.channels

    async def on_discord_message(self, message: discord.Message) -> None:
        """A live message from the gateway (discord.py's on_message)."""
        if self.watched(message):
            self.seen(message.channel.id, message.id)
        if self.wants(message):
            await self.take(message)

    def messageable(self, channel_id: int) -> discord.abc.Messageable:
        """The channel, from the cache when known (its messages then carry guild and members)."""
        import discord

        channel = self.client.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return self.client.get_partial_messageable(channel_id)

    def seen(self, channel_id: int, message_id: int) -> None:
        key = str(channel_id)
        if message_id > self.state.last_seen.get(key, 0):
            self.state.last_seen[key] = message_id
            self.state_changed()

    async def take(self, message: discord.Message, *, text: str | None = None) -> None:
        """Acknowledge a message at once and put it on the bus as a durable chat.message."""
        import discord

        me = self.client.user
        channel_id = message.channel.id
        self.start_typing(channel_id)
        event_id = derived_id("discord", str(message.id))
        body = text if text is not None else strip_mention(message.content, me.id if me else 0)
        event = ChatMessage(
            platform="discord",
            person_id=person_of(message.author.id),
            display_name=message.author.display_name,
            channel=str(channel_id),
            text=body,
            attachments=tuple(
                Attachment(
                    filename=a.filename, content_type=a.content_type or "", size=a.size, url=a.url
                )
                for a in message.attachments
            ),
            message_id=str(message.id),
            direct=message.guild is None
            or (me is not None and me in message.mentions)
            or isinstance(message.channel, discord.DMChannel),
        )
        self.remember_asked(event_id, channel_id, message.id)
        self.bus.publish_volatile(
            ChatAck(message_event_id=event_id, channel=str(channel_id)), key="discord"
        )
        await self.publish(event, key="discord", event_id=event_id)
        log.info(
            "discord.message",
            event_id=event_id,
            channel=channel_id,
            person=event.person_id,
            chars=len(body),
        )

    def remember_asked(self, event_id: str, channel_id: int, message_id: int) -> None:
        if event_id not in self.state.asked:
            self.state.asked[event_id] = Asked(channel_id=channel_id, message_id=message_id)
            while len(self.state.asked) > ASKED_KEPT:
                del self.state.asked[next(iter(self.state.asked))]
            self.state_changed()

    @on(ChatMessage)
    async def on_taken(self, event: ChatMessage) -> None:
        """Its own chat.message, back from the journal: after a crash, the replay rebuilds what was
        taken (and where to answer it) up to the last message the bus accepted, whatever the snapshot
        missed, so catch-up starts after it."""
        envelope = self.envelope
        if envelope is None or envelope.source != self.name or not event.message_id.isdigit():
            return
        try:
            channel_id = int(event.channel)
        except ValueError:
            return
        self.remember_asked(envelope.id, channel_id, int(event.message_id))
        self.seen(channel_id, int(event.message_id))

    def start_typing(self, channel_id: int) -> None:
        if channel_id in self.typing and not self.typing[channel_id].done():
            return
        self.typing[channel_id] = asyncio.get_running_loop().create_task(
            self._type(channel_id), name=f"typing-{channel_id}"
        )

    def stop_typing(self, channel_id: int) -> None:
        task = self.typing.pop(channel_id, None)
        if task is not None:
            task.cancel()

    async def _type(self, channel_id: int) -> None:
        """Keep the typing indicator up (Discord shows it ~10 s per request) until a reply shows."""
        deadline = time.monotonic() + self.config.typing_s
        while time.monotonic() < deadline:
            try:
                await self.client.http.send_typing(channel_id)
            except Exception as exc:  # a typing indicator is never worth an error
                log.debug("discord.typing_failed", channel=channel_id, error=str(exc))
            await asyncio.sleep(8)

    # -- missed messages -------------------------------------------------------------------

    async def on_session(self) -> None:
        """A new gateway session (READY): after the first, fetch what was missed meanwhile."""
        self.ready.set()
        if self.live:  # else on_live does it, once the replay has rebuilt what was already taken
            self.after_session()

    def after_session(self) -> None:
        from actors.discord_io.voice_link import rejoin

        self.spawn(self.catch_up(), "discord-catch-up")
        self.spawn(rejoin(self), "discord-voice-rejoin")

    async def catch_up(self) -> None:
        """Answer messages sent in watched channels since the last one seen (once each)."""
        watched = {int(c) for c in self.config.channels} | {int(c) for c in self.state.last_seen}
        for channel_id in sorted(watched):
            after = self.state.last_seen.get(str(channel_id))
            if after is None:
                continue  # never seen: nothing to catch up on (the start of history is not "missed")
            try:
                await self.catch_up_channel(channel_id, after)
            except Exception as exc:
                log.warning(
                    "discord.catch_up_failed",
                    channel=channel_id,
                    error=f"{type(exc).__name__}: {exc}",
                )

    async def catch_up_channel(self, channel_id: int, after: int) -> None:
        import discord

        channel = self.messageable(channel_id)
        oldest = discord.utils.time_snowflake(discord.utils.utcnow()) - (
            int(self.config.catch_up_max_age_h * 3600 * 1000) << 22
        )
        missed: list[discord.Message] = []
        newest = after
        async for message in channel.history(
            after=discord.Object(id=max(after, oldest)),
            limit=self.config.catch_up_limit * 10,
            oldest_first=True,
        ):
            newest = max(newest, message.id)
            if message.id > self.state.last_seen.get(str(channel_id), 0) and self.wants(message):
                missed.append(message)  # (a message taken live while this ran is already seen)
        limit = self.config.catch_up_limit
        if not missed:
            self.seen(channel_id, newest)
            return
        log.info("discord.catching_up", channel=channel_id, missed=len(missed))
        if len(missed) <= limit:
            for message in missed:
                self.seen(channel_id, message.id)
                await self.take(message)
            self.seen(channel_id, newest)
            return
        # Too many to answer one by one: one message that tells the brain what was said, answered once.
        me = self.client.user.id if self.client.user else 0
        lines = [f"{m.author.display_name}: {strip_mention(m.content, me)}" for m in missed]
        summary = (
            f"(While I was away, {len(missed)} messages arrived here. The latest ones:)\n"
            + "\n".join(lines[-limit:])
        )
        last = missed[-1]
        self.seen(channel_id, newest)
        await self.take(last, text=summary[:4000])

    # -- bus → Discord ---------------------------------------------------------------------

    @on(ReplyChunk)
    async def on_chunk(self, event: ReplyChunk) -> None:
        if event.reply_to in self.delivered or event.reply_to in self.state.pending:
            return
        shown = self.shown.get(event.reply_to)
        if shown is None:
            shown = self.start_showing(event.reply_to, event.channel)
            if shown is None:
                return
        shown.add_chunk(event.index, event.text)

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        if event.reply_to in self.delivered:
            return
        text = event.text.strip()
        if event.status == "cancelled" and not text and event.reply_to not in self.shown:
            self.mark_delivered(event.reply_to)
            return
        asked = self.state.asked.get(event.reply_to)
        try:
            channel_id = asked.channel_id if asked else int(event.channel)
        except ValueError:
            log.warning(
                "discord.reply_without_channel", reply_to=event.reply_to, channel=event.channel
            )
            return
        self.state.pending[event.reply_to] = Pending(
            reply_to=event.reply_to,
            channel_id=channel_id,
            reference=asked.message_id if asked else None,
            text=text,
            message_ids=list(self.shown[event.reply_to].message_ids)
            if event.reply_to in self.shown
            else [],
        )
        # Not streamed by this incarnation and replayed after a crash: its parts may be on Discord already.
        shown = self.shown.get(event.reply_to) or self.start_showing(
            event.reply_to, event.channel, adopt=not self.live
        )
        if shown is not None:
            shown.finish(text)

    def start_showing(self, reply_to: str, channel: str, *, adopt: bool = False) -> Shown | None:
        asked = self.state.asked.get(reply_to)
        pending = self.state.pending.get(reply_to)
        try:
            channel_id = (
                pending.channel_id if pending else asked.channel_id if asked else int(channel)
            )
        except ValueError:
            return None
        reference = pending.reference if pending else asked.message_id if asked else None
        shown = Shown(reply_to=reply_to, channel_id=channel_id, reference=reference)
        if pending is not None:
            shown.final = pending.text
        self.shown[reply_to] = shown
        self.spawn(self.deliver(shown, adopt=adopt), f"discord-reply-{reply_to}")
        return shown

    async def deliver(self, shown: Shown, *, adopt: bool) -> None:
        """Show one reply until Discord has it whole; on failure keep it pending and try again later."""
        try:
            while True:
                try:
                    if adopt:
                        await self.adopt(shown)
                        adopt = False
                    await show(
                        shown,
                        self._post,
                        self._edit,
                        self._delete,
                        edit_interval_s=self.config.edit_interval_s,
                    )
                    break
                except Undeliverable as exc:
                    log.error(
                        "discord.reply_undeliverable",
                        reply_to=shown.reply_to,
                        channel=shown.channel_id,
                        error=str(exc),
                        hint="Hex may not write in that channel, or it is gone",
                    )
                    break
                except Exception as exc:
                    if shown.final is None:
                        # Still streaming: the final reply (durable) will try again.
                        log.warning(
                            "discord.stream_failed", reply_to=shown.reply_to, error=repr(exc)
                        )
                        await shown.changed.wait()
                        continue
                    log.error(
                        "discord.reply_failed",
                        reply_to=shown.reply_to,
                        error=repr(exc),
                        retry_in_s=self.config.redeliver_s,
                    )
                    await asyncio.sleep(self.config.redeliver_s)
                    adopt = True
            self.mark_delivered(shown.reply_to)
        finally:
            if self.shown.get(shown.reply_to) is shown:
                del self.shown[shown.reply_to]
            self.stop_typing(shown.channel_id)

    def mark_delivered(self, reply_to: str) -> None:
        self.state.pending.pop(reply_to, None)
        self.delivered[reply_to] = None
        while len(self.delivered) > DELIVERED_KEPT:
            self.delivered.popitem(last=False)
        self.state.delivered = list(self.delivered)
        self.state_changed()

    async def adopt(self, shown: Shown) -> None:
        """After a crash: find the parts of this reply already posted (Hex's messages answering the
        person's message), so they are edited rather than posted again."""
        if shown.reference is None or shown.message_ids:
            return
        import discord

        me = self.client.user
        channel = self.messageable(shown.channel_id)
        found: list[discord.Message] = []
        async for message in channel.history(
            after=discord.Object(id=shown.reference), limit=50, oldest_first=True
        ):
            ref = message.reference
            if (
                me is not None
                and message.author.id == me.id
                and ref is not None
                and ref.message_id == shown.reference
            ):
                found.append(message)
        shown.message_ids = [m.id for m in found]
        shown.shown = [m.content for m in found]
        if found:
            log.info("discord.reply_adopted", reply_to=shown.reply_to, parts=len(found))

    async def _post(self, shown: Shown, index: int, text: str) -> int:
        import discord

        channel = self.client.get_partial_messageable(shown.channel_id)

        async def attempt() -> int:
            extra: dict[str, Any] = {}
            if shown.reference is not None:
                extra["reference"] = discord.MessageReference(
                    message_id=shown.reference,
                    channel_id=shown.channel_id,
                    fail_if_not_exists=False,
                )
            # The same nonce on every try of this part: with it Discord creates the message once even
            # when a try timed out after Discord had it (discord.py sets enforce_nonce).
            extra["nonce"] = derived_id(shown.reply_to, "part", str(index))[:25]
            try:
                sent = await channel.send(
                    text,
                    mention_author=False,
                    allowed_mentions=discord.AllowedMentions(everyone=False, roles=False),
                    **extra,
                )
            except (discord.Forbidden, discord.NotFound) as exc:
                raise Undeliverable(f"{exc.status}: {exc.text}") from None
            return sent.id

        self.stop_typing(shown.channel_id)
        async with self.channel_locks[shown.channel_id]:
            message_id: int = await with_retries(
                f"post {shown.reply_to}#{index}",
                attempt,
                attempts=self.config.attempts,
                backoff_s=self.config.backoff_s,
            )
        pending = self.state.pending.get(shown.reply_to)
        if pending is not None:
            pending.message_ids.append(message_id)
            self.state_changed()
        return message_id

    async def _edit(self, shown: Shown, index: int, text: str) -> None:
        import discord

        message = self.client.get_partial_messageable(shown.channel_id).get_partial_message(
            shown.message_ids[index]
        )

        async def attempt() -> None:
            try:
                await message.edit(content=text)
            except discord.Forbidden as exc:
                raise Undeliverable(f"{exc.status}: {exc.text}") from None

        await with_retries(
            f"edit {shown.reply_to}#{index}",
            attempt,
            attempts=self.config.attempts,
            backoff_s=self.config.backoff_s,
        )

    async def _delete(self, shown: Shown, index: int) -> None:
        import discord

        message = self.client.get_partial_messageable(shown.channel_id).get_partial_message(
            shown.message_ids[index]
        )
        try:
            await message.delete()
        except discord.NotFound:
            pass

    @on(Notice)
    async def on_notice(self, event: Notice) -> None:
        if event.kind == "fallback":
            return  # which backend answered is for logs and `hexbus tail`, not the conversation
        try:
            channel_id = int(event.channel)
        except ValueError:
            return
        self.spawn(self.post_notice(channel_id, event.text), "discord-notice")

    async def post_notice(self, channel_id: int, text: str) -> None:
        channel = self.client.get_partial_messageable(channel_id)
        await with_retries(
            "notice",
            lambda: channel.send(f"*{text}*"),
            attempts=self.config.attempts,
            backoff_s=self.config.backoff_s,
        )

    @on(MemoryChanged)
    async def on_memory_changed(self, event: MemoryChanged) -> None:
        if event.action == "suggested" and event.ids:
            from actors.discord_io.commands import propose_suggestion

            self.spawn(propose_suggestion(self, event.ids[0], event.detail), "discord-suggestion")

    @on(AudioOut)
    async def on_audio(self, event: AudioOut) -> None:
        from actors.discord_io.voice_link import play

        play(self, event, self.blob or b"")

    @on(Speaking)
    async def on_speaking(self, event: Speaking) -> None:
        from actors.discord_io.voice_link import speaking

        speaking(self, event)

    async def on_live(self) -> None:
        for reply_to in list(self.state.pending):
            if reply_to not in self.shown:
                self.start_showing(reply_to, "", adopt=True)
        if self.ready.is_set():
            self.after_session()
