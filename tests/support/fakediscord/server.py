"""FakeDiscord: the server's one object, its lifecycle, and the synchronous API tests use.

It owns the parts (:mod:`world`, :mod:`gateway`, :mod:`rest`, :mod:`interactions`, :mod:`voice`)
and runs them on its own event loop in a background thread; every public method hops onto that
loop, so the world is only ever touched by one thread. Ids are ints here and strings on the
wire, as in Discord's JSON.

FakeDiscord is one cohesive class over 500 lines: each public method is a few lines (a hop onto the
loop and a call into a part) and a docstring saying what a test may rely on; splitting it would
split one API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from tests.support.fakediscord.gateway import Gateway
from tests.support.fakediscord.interactions import Interactions
from tests.support.fakediscord.rest import Injection, Rest
from tests.support.fakediscord.rtp import RtpRecord
from tests.support.fakediscord.voice import VoiceServer
from tests.support.fakediscord.wire import (
    API_PREFIX,
    GATEWAY_PATH,
    Intent,
    Json,
    Records,
    RequestRecord,
    fixed_snowflake,
)
from tests.support.fakediscord.world import World

T = TypeVar("T")


class FakeDiscord:
    """A loopback Discord for discord.py: REST under ``api_base``, the gateway at ``gateway_url``.

    All public methods are synchronous and safe to call from any thread; they run on the
    server's own loop. Ids are ints here and strings on the wire, as in Discord's JSON.
    """

    def __init__(
        self,
        token: str = "test-token",
        *,
        bot_id: int = fixed_snowflake("2024-01-01", 1),
        app_id: int | None = None,
        owner_id: int = fixed_snowflake("2023-01-01", 2),
        guild_id: int = fixed_snowflake("2024-01-02", 3),
        bot_name: str = "Hex",
        heartbeat_interval_ms: int = 1000,
        message_rate: tuple[int, float] = (5, 5.0),
        approved_intents: int = Intent.PRIVILEGED,
        interaction_deadline_s: float = 3.0,
    ) -> None:
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.records = Records()
        self.world = World(
            bot_id=bot_id,
            app_id=bot_id if app_id is None else app_id,
            owner_id=owner_id,
            guild_id=guild_id,
            bot_name=bot_name,
            approved_intents=approved_intents,
        )
        self.gateway = Gateway(
            self.world, self.records, token=token, heartbeat_interval_ms=heartbeat_interval_ms
        )
        self.world.dispatch = self.gateway.dispatch
        self.voice = VoiceServer(
            self.world, self.gateway, self.records, heartbeat_interval_ms=heartbeat_interval_ms
        )
        self.gateway.on_voice_request = self.voice.bot_request
        self.interactions = Interactions(self.world, interaction_deadline_s=interaction_deadline_s)
        self.rest = Rest(
            self.world,
            self.gateway,
            self.interactions,
            self.records,
            token=token,
            message_rate=message_rate,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    @property
    def bot_id(self) -> int:
        return self.world.bot_id

    @property
    def app_id(self) -> int:
        return self.world.app_id

    @property
    def owner_id(self) -> int:
        return self.world.owner_id

    @property
    def guild_id(self) -> int:
        return self.world.guild_id

    @property
    def bot_role_id(self) -> int:
        return self.world.bot_role_id

    @property
    def approved_intents(self) -> int:
        return self.world.approved_intents

    @property
    def general_channel_id(self) -> int:
        return self.world.general_channel_id

    @property
    def interaction_deadline_s(self) -> float:
        """How long a bot has to answer an interaction (Discord: 3 s); settable."""
        return self.interactions.interaction_deadline_s

    @interaction_deadline_s.setter
    def interaction_deadline_s(self, seconds: float) -> None:
        self.interactions.interaction_deadline_s = seconds

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeDiscord:
        """Start listening on 127.0.0.1 (random port); returns once connections are accepted."""
        self._thread = threading.Thread(target=self._run, name="fakediscord", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("FakeDiscord did not start within 10 s")
        if self._start_error is not None:
            raise RuntimeError("FakeDiscord failed to start") from self._start_error
        return self

    def stop(self) -> None:
        """Close every socket and the listener, and join the server thread."""
        loop, stop = self._loop, self._stop_event
        if loop is not None and stop is not None and self._thread is not None:
            loop.call_soon_threadsafe(stop.set)
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FakeDiscord:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._start_error = exc
            self._started.set()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get(GATEWAY_PATH, self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self.rest.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.world.port = runner.addresses[0][1]
        self._loop = asyncio.get_running_loop()
        voice_runner = await self.voice.serve()
        self._stop_event = asyncio.Event()
        self._started.set()
        await self._stop_event.wait()
        for task in list(self.voice.speakers):
            task.cancel()
        for conn in list(self.gateway.conns):
            await self.gateway.close_conn(conn, 1001)
        for conn in list(self.voice.conns):
            await conn.close(1001)
        await runner.cleanup()
        if voice_runner is not None:
            await voice_runner.cleanup()
        if self.voice.udp is not None:
            self.voice.udp.close()
        if self.voice.cert_dir is not None:
            shutil.rmtree(self.voice.cert_dir, ignore_errors=True)

    # ------------------------------------------------------------------ thread hopping

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server loop (or inline before start) and return its result."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(10)

    def _call_async(self, make: Callable[[], Awaitable[T]]) -> T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("FakeDiscord is not started")

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(10)

    # ------------------------------------------------------------------ public properties

    @property
    def port(self) -> int:
        return self.world.port

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.world.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    @property
    def connected(self) -> bool:
        """True while some gateway session is identified or resumed on a live socket."""
        return self._call(lambda: any(s.conn is not None for s in self.gateway.sessions.values()))

    @property
    def online(self) -> bool:
        return self._call(lambda: self.gateway.online)

    @property
    def identify_count(self) -> int:
        return self._call(lambda: self.records.counts["identify"])

    @property
    def resume_count(self) -> int:
        return self._call(lambda: self.records.counts["resume"])

    @property
    def heartbeats(self) -> int:
        return self._call(lambda: self.records.counts["heartbeat"])

    @property
    def rate_limited(self) -> int:
        """How many 429s were answered, injected ones included."""
        return self._call(lambda: self.records.counts["rate_limited"])

    @property
    def intents(self) -> int | None:
        """The intents of the latest IDENTIFY."""
        return self._call(lambda: self.gateway.last_intents)

    @property
    def presence(self) -> Json | None:
        """The latest op 3 presence update."""
        return self._call(lambda: self.gateway.presence)

    @property
    def voice_state_requests(self) -> list[Json]:
        """Every op 4 payload the bot sent, in order."""
        return self._call(lambda: [dict(v) for v in self.gateway.voice_requests])

    @property
    def voice_endpoint(self) -> str:
        """What VOICE_SERVER_UPDATE names: ``127.0.0.1:PORT`` of the TLS voice gateway."""
        self.voice.available()
        return f"127.0.0.1:{self.voice.port}"

    @property
    def voice_ca_file(self) -> str:
        """The voice gateway's self-signed certificate (PEM), for ``point_discord_py_voice``."""
        self.voice.available()
        assert self.voice.cert_file is not None
        return self.voice.cert_file

    @property
    def voice_udp_port(self) -> int:
        """The UDP port of IP discovery and RTP, as the voice READY says."""
        return self.voice.udp_port

    @property
    def voice_connection(self) -> Json | None:
        """The bot's latest voice gateway session, or None before its first voice IDENTIFY.

        Keys: ``channel_id``, ``ssrc``, ``mode``, ``max_dave_protocol_version`` (from its
        IDENTIFY), ``dave_protocol_version`` (what this server answered: 0), ``version`` (the
        ``v`` query parameter), ``address`` (from SELECT_PROTOCOL) and ``discovered`` (where its
        IP discovery came from), ``ready`` (SESSION_DESCRIPTION sent), ``connected`` (websocket
        open), ``left`` (it sent op 4 with no channel), ``close_code``, ``speaking`` (its op 5
        payloads), ``other_ops``, ``heartbeats`` and ``last_heartbeat`` (its ``d``), ``resumes``, ``binary_frames`` (DAVE/MLS
        frames), ``keepalives`` (8-byte UDP keepalives), ``packets`` (RTP packets decrypted),
        ``undecryptable``, and ``user_ssrcs`` (user id to the SSRC ``speak`` gave them).
        """

        return self._call(self.voice.connection_view)

    @property
    def requests(self) -> list[RequestRecord]:
        return self._call(lambda: list(self.records.requests))

    @property
    def errors(self) -> list[str]:
        """Tracebacks of exceptions inside the server itself (a bug here, not in the bot)."""
        return self._call(lambda: list(self.records.errors))

    @property
    def commands(self) -> list[Json]:
        """Registered application commands: global ones, then guild ones (with guild_id)."""

        def collect() -> list[Json]:
            return [
                json.loads(json.dumps(c))
                for scope in self.world.commands.values()
                for c in scope.values()
            ]

        return self._call(collect)

    # ------------------------------------------------------------------ world building

    def add_user(self, name: str, *, bot: bool = False) -> int:
        """Add a user who is also a member of the guild; returns the user id."""
        return self._call(lambda: self.world.add_user(self.world.ids.next(), name, bot=bot))

    def add_channel(self, name: str) -> int:
        """Add a guild text channel; returns its id."""
        return self._call(lambda: self.world.add_channel(name, "text"))

    def add_voice_channel(self, name: str) -> int:
        """Add a guild voice channel; returns its id."""
        return self._call(lambda: self.world.add_channel(name, "voice"))

    def dm_channel(self, user_id: int) -> int:
        """The DM channel between the bot and ``user_id``, created on first use."""
        return self._call(lambda: self.world.dm_for(user_id))

    def set_voice_state(self, user_id: int, channel_id: int | None) -> None:
        """Move a user into (or, with None, out of) a voice channel; dispatches VOICE_STATE_UPDATE."""
        self._call(lambda: self.voice.set_state(user_id, channel_id, {}))

    def set_presence(self, user_id: int, *statuses: str) -> None:
        """A member's status changes ("online", "idle", "dnd", "offline"): PRESENCE_UPDATE, to
        the sessions that asked for GUILD_PRESENCES. Several statuses are sent back to back, as
        quick changes arrive (a client reads them in one go)."""
        world = self.world

        def build(status: str) -> Callable[[int], Json | None]:
            def payload(intents: int) -> Json | None:
                if not intents & Intent.GUILD_PRESENCES:
                    return None
                return {
                    "user": {"id": str(user_id)},
                    "guild_id": str(world.guild_id),
                    "status": status,
                    "activities": [],
                    "client_status": {} if status == "offline" else {"desktop": status},
                }

            return payload

        def send() -> None:
            for status in statuses:
                world.dispatch("PRESENCE_UPDATE", build(status))

        self._call(send)

    def leave_voice(self, user_id: int) -> None:
        """Take a user out of voice: CLIENT_DISCONNECT (op 13) to the bot's voice session if
        they shared its channel, and VOICE_STATE_UPDATE with ``channel_id`` null.

        The same as ``set_voice_state(user_id, None)``.
        """
        self.set_voice_state(user_id, None)

    # ------------------------------------------------------------------ test controls

    def set_online(self, online: bool) -> None:
        """Offline: live sockets drop (1001), upgrades get 503, and nothing is dispatched.

        REST stays up. Messages posted while offline are stored but never replayed, so a bot
        must read them back from channel history once it is connected again.
        """
        self._call_async(lambda: self.gateway.set_online(online))

    def outage(self, seconds: float) -> None:
        """Go offline now and come back after ``seconds``; returns at once."""

        async def down() -> None:
            await self.gateway.set_online(False)
            asyncio.get_running_loop().call_later(seconds, self.gateway.go_online)

        self._call_async(down)

    def disconnect(self, code: int = 4000, *, resumable: bool = True) -> None:
        """Close the live gateway sockets with ``code``; discord.py reconnects and RESUMEs.

        With ``resumable=False`` the sessions are forgotten first, so the RESUME is answered
        with INVALID_SESSION and discord.py has to IDENTIFY again (a second READY).
        """

        self._call_async(lambda: self.gateway.drop(code, resumable=resumable))

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        retry_after: float = 0.5,
        *,
        html: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` instead of handling them.

        ``path_regex`` must fully match the path relative to the API base, e.g.
        ``r"/channels/\\d+/messages"``. 429s carry ``retry_after``; ``html=True`` sends an HTML
        body (for a 429 that is what a Cloudflare ban looks like to discord.py).
        """
        inj = Injection(method.upper(), re.compile(path_regex), status, times, retry_after, html)
        self._call(lambda: self.rest.injections.append(inj))

    def wait_until(
        self, predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.02
    ) -> T:
        """Poll ``predicate`` from the calling thread until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    # ------------------------------------------------------------------ test-side actions

    def post(
        self,
        channel_id: int,
        author_id: int,
        content: str,
        *,
        reply_to: int | None = None,
        mention_bot: bool = False,
        files: Iterable[tuple[str, bytes]] = (),
    ) -> Json:
        """Store a user's message and dispatch MESSAGE_CREATE; returns it as stored."""

        def run() -> Json:
            self.world.user(author_id)
            ch = self.world.channel(channel_id)
            if reply_to is not None:
                self.world.message(channel_id, reply_to)
            m = self.world.new_message(ch, author_id, content, reference_id=reply_to)
            if mention_bot and self.world.bot_id not in m.mentions:
                m.mentions.append(self.world.bot_id)
            m.attachments = [self.world.store_attachment(ch.id, name, data) for name, data in files]
            self.world.store(m)
            return self.world.public(m)

        return self._call(run)

    def speak(
        self, user_id: int, channel_id: int, pcm: bytes, *, fast: bool = False
    ) -> concurrent.futures.Future[int]:
        """Have a user in ``channel_id`` talk to the bot there; returns at once.

        ``pcm`` is 48 kHz stereo s16le; it is cut into 20 ms frames (the last one padded with
        silence), each encoded with ``discord.opus.Encoder`` and sent to the bot's UDP address
        as RTP with the user's SSRC, sequence +1 and timestamp +960 per frame, an audio-level
        header extension, sealed with the bot's session key, followed by five opus silence
        frames as a Discord client sends when it stops talking. The user's SSRC is announced
        first with SPEAKING (op 5, ``speaking: 1``), which is how the bot maps it to the user.
        Frames go 20 ms apart unless ``fast``, which sends them back to back (a receiver's
        jitter buffer may then drop some). The future gives the number of packets sent; it
        stops early if the user or the bot leaves the channel.
        """
        if len(pcm) % 4:
            raise ValueError("pcm must be 16-bit stereo: a whole number of 4-byte samples")
        return self._call(lambda: self.voice.start_speaking(user_id, channel_id, pcm, fast))

    def voice_packets(self, channel_id: int) -> list[RtpRecord]:
        """Every RTP packet the bot sent while in ``channel_id``, in arrival order, decrypted."""
        return self._call(lambda: list(self.voice.audio.get(channel_id, [])))

    def voice_received(self, channel_id: int) -> list[bytes]:
        """The opus payloads the bot sent in ``channel_id``, in order, its silence frames too."""
        return [p.opus for p in self.voice_packets(channel_id)]

    def voice_pcm(self, channel_id: int) -> bytes:
        """``voice_received`` decoded with ``discord.opus.Decoder``: 48 kHz stereo s16le."""
        from discord.opus import Decoder

        decoder = Decoder()  # type: ignore[no-untyped-call]
        return b"".join(decoder.decode(p, fec=False) for p in self.voice_received(channel_id))

    def edit(self, channel_id: int, message_id: int, content: str) -> Json:
        """Edit a message as its author would; dispatches MESSAGE_UPDATE."""

        def run() -> Json:
            m = self.world.message(channel_id, message_id)
            self.world.apply_edit(m, {"content": content})
            return self.world.public(m)

        return self._call(run)

    def delete(self, channel_id: int, message_id: int) -> None:
        """Delete a message; dispatches MESSAGE_DELETE."""
        self._call(lambda: self.world.delete(self.world.message(channel_id, message_id)))

    def messages(self, channel_id: int) -> list[Json]:
        """The channel as it is now, oldest first; each has ``edits`` and ``history``."""
        return self._call(
            lambda: [self.world.public(m) for m in self.world.channel(channel_id).messages]
        )

    def message(self, message_id: int) -> Json:
        """One message (ephemeral ones included) with ``edits`` and ``history``."""

        def run() -> Json:
            m = self.world.msgs.get(message_id)
            if m is None:
                raise KeyError(f"no message {message_id}")
            return self.world.public(m)

        return self._call(run)

    def wait_for_message(
        self, channel_id: int, predicate: Callable[[Json], bool], timeout: float = 5.0
    ) -> Json:
        """Wait until a message in the channel satisfies ``predicate``; return the first one."""

        def first() -> Json | None:
            return next((m for m in self.messages(channel_id) if predicate(m)), None)

        found = self.wait_until(first, timeout)
        assert found is not None
        return found

    def interact(
        self,
        name: str,
        *,
        user_id: int,
        channel_id: int,
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        guild: bool = True,
    ) -> str:
        """Dispatch a slash command the bot has registered; returns the interaction id.

        ``subcommand`` is ``"sub"`` or ``"group sub"``. Option values are Python values; user,
        channel and role options take ids and get ``resolved`` data as Discord sends it.
        """
        return self._call(
            lambda: self.interactions.interact(
                name, user_id, channel_id, options or {}, subcommand, guild
            )
        )

    def click(
        self, message_id: int, custom_id: str, *, user_id: int, values: list[str] | None = None
    ) -> str:
        """Dispatch a component interaction on a bot message; returns the interaction id."""
        return self._call(lambda: self.interactions.click(message_id, custom_id, user_id, values))

    def interaction(self, interaction_id: int | str) -> Json:
        """What the bot answered: callbacks, the original response as it is now, followups."""
        return self._call(lambda: self.interactions.view(int(interaction_id)))
