"""A Discord-compatible test server on loopback, for discord.py's real, unmodified client.

The Discord actor runs in another process, so this is a real HTTP and websocket server
(aiohttp.web) on 127.0.0.1 with a random free port, run on its own event loop in a background
thread. Tests drive it through a synchronous, thread-safe API: every method hops onto the
server's loop, so the world model is only ever touched by one thread.

It models one bot, one guild, text/voice/DM channels and messages, the gateway (HELLO, IDENTIFY,
READY, GUILD_CREATE, heartbeats, RESUME with replay, INVALID_SESSION, voice state requests),
the REST routes discord.py 2.7 calls for messages, DMs, application commands and interactions,
Discord's rate-limit headers with a real per-channel message bucket, the MESSAGE_CONTENT intent,
and failure injection (outages, dropped sockets, 429s, 5xx).

Pointing discord.py at it takes the gateway URL as well as the API base: a non-sharded
``Client`` never asks ``GET /gateway/bot``; it dials ``DiscordWebSocket.DEFAULT_GATEWAY``
directly (and again after INVALID_SESSION). ``point_discord_py`` sets both.

Voice is real too: op 4 is answered with VOICE_SERVER_UPDATE naming a voice gateway on
loopback (websocket, v8 with ``seq``), whose READY points at a UDP port that does IP discovery
and carries RTP encrypted with ``aead_xchacha20_poly1305_rtpsize`` (PyNaCl) around opus
(libopus through ``discord.opus``). discord.py always dials ``wss://{endpoint}``, so the voice
gateway serves TLS with a throwaway self-signed certificate (made with the ``openssl`` CLI);
``point_discord_py_voice`` makes a process trust it. SESSION_DESCRIPTION says
``dave_protocol_version: 0``, Discord's answer when a call is not end-to-end encrypted, so only
transport encryption applies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import shutil
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, NamedTuple, TypeVar

from aiohttp import BodyPartReader, WSMsgType, web

__all__ = [
    "FakeDiscord",
    "Intent",
    "RequestRecord",
    "RtpRecord",
    "point_discord_py",
    "point_discord_py_voice",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")
Json = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway-ws"


class Intent:
    """Gateway intent bits that change what this server sends."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


# Permissions a fresh guild's @everyone has, plus MANAGE_MESSAGES for the bot's role.
_EVERYONE_PERMS = sum(1 << b for b in (0, 6, 9, 10, 11, 14, 15, 16, 18, 20, 21, 25, 26, 31, 38))
_BOT_PERMS = _EVERYONE_PERMS | (1 << 13)
_EPHEMERAL = 1 << 6
_LOADING = 1 << 7
_MAX_CONTENT = 2000

# What Discord's voice servers offer since the November 2024 cut, preferred first. discord.py
# 2.7 implements only the second; AES-GCM is offered so that its choosing is real, not forced.
VOICE_MODES = ("aead_aes256_gcm_rtpsize", "aead_xchacha20_poly1305_rtpsize")
_XCHACHA = "aead_xchacha20_poly1305_rtpsize"
_OPUS_SILENCE = b"\xf8\xff\xfe"
_FRAME_SAMPLES = 960  # 20 ms at 48 kHz
_FRAME_BYTES = _FRAME_SAMPLES * 4  # stereo s16le
_SILENCE_TAIL = 5  # frames of opus silence a Discord client sends when it stops talking
# One RFC 8285 one-byte extension element (id 1, audio level, RFC 6464) in one 32-bit word, as
# Discord's packets to clients carry; under rtpsize its 4-byte header is authenticated, not
# encrypted, and its body is encrypted with the opus payload.
_RTP_EXT_HEADER = b"\xbe\xde\x00\x01"
_RTP_EXT_BODY = b"\x10\xa0\x00\x00"


class RequestRecord(NamedTuple):
    """One HTTP request the server answered; ``path`` is relative to the API base.

    Gateway upgrades are logged too, as ``GET /gateway-ws`` with 101 (accepted) or 503 (offline).
    """

    t: float
    method: str
    path: str
    body: Any
    status: int


def point_discord_py(api_base: str, gateway_url: str) -> None:
    """Aim this process's discord.py at a FakeDiscord, as the bot process must do too.

    ``webhook.async_.Route`` is the same class as ``http.Route`` (imported from it), so one
    assignment covers REST and interaction webhooks; the gateway URL is separate.
    """
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class RtpRecord(NamedTuple):
    """One RTP packet the bot sent, decrypted; ``t`` is its arrival on the monotonic clock."""

    t: float
    ssrc: int
    sequence: int
    timestamp: int
    opus: bytes


def point_discord_py_voice(ca_file: str) -> None:
    """Make this process's discord.py trust a FakeDiscord's voice gateway certificate.

    discord.py dials ``wss://{endpoint}/?v=8`` with no way to ask for ``ws://``, through its
    aiohttp session; a connector that was not given an SSL context verifies with aiohttp's one
    shared default context, ``aiohttp.connector._SSL_CONTEXT_VERIFIED``, made when aiohttp is
    imported. This adds ``ca_file`` (``FakeDiscord.voice_ca_file``, a self-signed certificate
    for IP 127.0.0.1 only) to that context's trust store; nothing in discord.py changes. Call it
    before the bot connects to voice; repeated calls add more certificates.
    """
    import aiohttp.connector

    aiohttp.connector._SSL_CONTEXT_VERIFIED.load_verify_locations(cafile=ca_file)


def _make_certificate(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "voice-cert.pem"), os.path.join(directory, "voice-key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def _seal_rtp(
    ssrc: int, sequence: int, timestamp: int, opus: bytes, key: bytes, counter: int
) -> bytes:
    """An ``aead_xchacha20_poly1305_rtpsize`` packet: header and extension header as AAD."""
    import nacl.secret

    header = struct.pack(">BBHII", 0x90, 0x78, sequence, timestamp, ssrc) + _RTP_EXT_HEADER
    nonce = counter.to_bytes(4, "big")
    box = nacl.secret.Aead(key)
    sealed = box.encrypt(_RTP_EXT_BODY + opus, header, nonce + bytes(20)).ciphertext
    return header + sealed + nonce


def _open_rtp(packet: bytes, key: bytes) -> bytes:
    """The opus payload of an ``aead_xchacha20_poly1305_rtpsize`` packet."""
    import nacl.secret

    head = 12 + 4 * (packet[0] & 0x0F)
    ext_words = 0
    if packet[0] & 0x10:
        (ext_words,) = struct.unpack_from(">H", packet, head + 2)
        head += 4
    if len(packet) < head + 4 + 16:
        raise ValueError("RTP packet too short")
    nonce = packet[-4:] + bytes(20)
    plain = nacl.secret.Aead(key).decrypt(packet[head:-4], packet[:head], nonce)
    return plain[4 * ext_words :]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _fixed_snowflake(day: str, n: int) -> int:
    ms = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
    return ((ms - DISCORD_EPOCH_MS) << 22) | n


class _Snowflakes:
    """Real snowflakes from the wall clock, strictly increasing, so ``after=`` ordering holds."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        sid = max(ms << 22, self._last + 1)
        self._last = sid
        return sid


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"message": message, "code": code, **extra}


def _not_found(what: str, code: int) -> _ApiError:
    return _ApiError(404, code, f"Unknown {what}")


def _form_error(name: str = "", code: str = "", message: str = "") -> _ApiError:
    """Discord's 50035 answer, naming the offending field when there is one."""
    errors = {name: {"_errors": [{"code": code, "message": message}]}} if name else {}
    return _ApiError(400, 50035, "Invalid Form Body", errors=errors)


@dataclass
class _User:
    id: int
    name: str
    bot: bool


@dataclass
class _Channel:
    id: int
    kind: str  # "text" | "voice" | "dm"
    name: str
    position: int = 0
    recipient_id: int | None = None
    messages: list[_Msg] = field(default_factory=list)


@dataclass
class _Msg:
    id: int
    channel_id: int
    author_id: int
    content: str
    created: float
    type: int = 0
    flags: int = 0
    embeds: list[Json] = field(default_factory=list)
    components: list[Json] = field(default_factory=list)
    attachments: list[Json] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)
    reference_id: int | None = None
    nonce: int | str | None = None
    webhook_id: int | None = None
    interaction_metadata: Json | None = None
    reactions: dict[str, set[int]] = field(default_factory=dict)
    edited: float | None = None
    edits: int = 0
    history: list[str] = field(default_factory=list)
    visible: bool = True  # False for ephemeral interaction messages: never in the channel
    deleted: bool = False


@dataclass
class _Interaction:
    id: int
    token: str
    type: int  # 2 application command, 3 component
    created: float
    user_id: int
    channel_id: int
    payload: Json
    name: str | None = None
    custom_id: str | None = None
    clicked_id: int | None = None
    callbacks: list[Json] = field(default_factory=list)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)


@dataclass
class _Bucket:
    """Discord's fixed window: the first request opens it, ``limit`` requests fit in it."""

    name: str
    limit: int
    window: float
    count: int = 0
    reset_at: float = 0.0

    def take(self, now: float) -> float | None:
        if now >= self.reset_at:
            self.count, self.reset_at = 0, now + self.window
        if self.count >= self.limit:
            return self.reset_at - now
        self.count += 1
        return None

    def headers(self, now: float) -> dict[str, str]:
        remaining = self.limit - self.count if now < self.reset_at else self.limit
        reset_after = max(0.0, self.reset_at - now) if now < self.reset_at else self.window
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.md5(self.name.encode()).hexdigest()[:16],
        }


@dataclass
class _Injection:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float
    html: bool


class _Conn:
    """One gateway websocket; a single writer task keeps frames in order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.session: _Session | None = None

    def send(self, payload: Json | str) -> None:
        self.queue.put_nowait(payload if isinstance(payload, str) else json.dumps(payload))


@dataclass
class _Session:
    id: str
    intents: int
    seq: int = 0
    conn: _Conn | None = None
    buffer: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=5000))


@dataclass
class _VoiceSession:
    """The bot's connection to the voice gateway, from IDENTIFY until it leaves the channel."""

    token: str
    session_id: str
    channel_id: int
    ssrc: int
    conn: _Conn
    identify: Json
    version: str
    seq: int = 0
    mode: str | None = None
    key: bytes | None = None
    address: tuple[str, int] | None = None
    discovered: tuple[str, int] | None = None
    nonce: int = 0
    speaking: list[Json] = field(default_factory=list)
    other_ops: list[Json] = field(default_factory=list)
    heartbeats: int = 0
    last_heartbeat: Any = None
    binary_frames: int = 0
    keepalives: int = 0
    undecryptable: int = 0
    packets: int = 0
    resumes: int = 0
    open: bool = True
    left: bool = False
    close_code: int | None = None


@dataclass
class _Stream:
    """A user's outgoing RTP stream: one SSRC, sequence and timestamp running on across talks."""

    ssrc: int
    sequence: int
    timestamp: int


@dataclass
class _Req:
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    files: list[tuple[str, bytes]]


_Reply = tuple[int, Any]
_Handler = Callable[[_Req], Awaitable[_Reply]]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: _Handler
    bucket: str
    auth: bool


class FakeDiscord:
    """A loopback Discord for discord.py: REST under ``api_base``, the gateway at ``gateway_url``.

    All public methods are synchronous and safe to call from any thread; they run on the
    server's own loop. Ids are ints here and strings on the wire, as in Discord's JSON.
    """

    def __init__(
        self,
        token: str = "test-token",
        *,
        bot_id: int = _fixed_snowflake("2024-01-01", 1),
        app_id: int | None = None,
        owner_id: int = _fixed_snowflake("2023-01-01", 2),
        guild_id: int = _fixed_snowflake("2024-01-02", 3),
        bot_name: str = "Hex",
        heartbeat_interval_ms: int = 1000,
        message_rate: tuple[int, float] = (5, 5.0),
        approved_intents: int = Intent.PRIVILEGED,
        interaction_deadline_s: float = 3.0,
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.app_id = bot_id if app_id is None else app_id
        self.owner_id = owner_id
        self.guild_id = guild_id
        self.bot_role_id = guild_id + 1
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.approved_intents = approved_intents
        self.interaction_deadline_s = interaction_deadline_s
        self._message_rate = message_rate
        self._ids = _Snowflakes()
        self._users: dict[int, _User] = {}
        self._joined: dict[int, float] = {}
        self._channels: dict[int, _Channel] = {}
        self._dms: dict[int, int] = {}
        self._msgs: dict[int, _Msg] = {}
        self._files: dict[int, tuple[str, bytes]] = {}
        self._nonces: dict[tuple[int, int, str], int] = {}
        self._voice: dict[int, Json] = {}
        self._commands: dict[int | None, dict[str, Json]] = {}
        self._interactions: dict[int, _Interaction] = {}
        self._by_token: dict[str, _Interaction] = {}
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()
        self._buckets: dict[str, _Bucket] = {}
        self._injections: list[_Injection] = []
        self._requests: list[RequestRecord] = []
        self._errors: list[str] = []
        self._voice_requests: list[Json] = []
        self._voice_token: str | None = None
        self._bot_voice: _VoiceSession | None = None
        self._voice_conns: set[_Conn] = set()
        self._voice_audio: dict[int, list[RtpRecord]] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_ssrc = 100 + secrets.randbelow(1000)
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_port = 0
        self._voice_port = 0
        self._cert_dir: str | None = None
        self._cert_file: str | None = None
        self._voice_error: str | None = None
        self._speakers: set[asyncio.Task[int]] = set()
        self._online = True
        self._counts = {"identify": 0, "resume": 0, "heartbeat": 0, "rate_limited": 0}
        self._last_intents: int | None = None
        self._presence: Json | None = None
        self._routes = self._build_routes()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._port = 0
        self._add_user(owner_id, "owner", bot=False)
        self._add_user(bot_id, bot_name, bot=True)
        self.general_channel_id = self._add_channel("general", "text")

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
        app.router.add_get(GATEWAY_PATH, self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._http)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._port = runner.addresses[0][1]
        self._loop = asyncio.get_running_loop()
        voice_runner = await self._serve_voice()
        self._stop_event = asyncio.Event()
        self._started.set()
        await self._stop_event.wait()
        for task in list(self._speakers):
            task.cancel()
        for conn in list(self._conns) + list(self._voice_conns):
            await self._close_conn(conn, 1001)
        await runner.cleanup()
        if voice_runner is not None:
            await voice_runner.cleanup()
        if self._udp is not None:
            self._udp.close()
        if self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)

    async def _serve_voice(self) -> web.AppRunner | None:
        """The voice gateway (TLS websocket) and the UDP media port, both on 127.0.0.1."""
        loop = asyncio.get_running_loop()
        fake = self

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                try:
                    fake._on_udp(data, (str(addr[0]), int(addr[1])))
                except Exception:
                    fake._record_error()

        transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
        self._udp = transport
        self._udp_port = transport.get_extra_info("sockname")[1]
        self._cert_dir = tempfile.mkdtemp(prefix="fakediscord-voice-")
        try:
            cert, key = await loop.run_in_executor(None, _make_certificate, self._cert_dir)
        except (OSError, subprocess.SubprocessError) as exc:
            self._voice_error = (
                f"the fake voice gateway needs the openssl CLI for its TLS certificate ({exc})"
            )
            _log.warning("fakediscord: voice disabled: %s", self._voice_error)
            return None
        self._cert_file = cert
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_get("/", self._voice_gateway)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        self._voice_port = runner.addresses[0][1]
        return runner

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
        return self._port

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}{GATEWAY_PATH}"

    @property
    def connected(self) -> bool:
        """True while some gateway session is identified or resumed on a live socket."""
        return self._call(lambda: any(s.conn is not None for s in self._sessions.values()))

    @property
    def online(self) -> bool:
        return self._call(lambda: self._online)

    @property
    def identify_count(self) -> int:
        return self._call(lambda: self._counts["identify"])

    @property
    def resume_count(self) -> int:
        return self._call(lambda: self._counts["resume"])

    @property
    def heartbeats(self) -> int:
        return self._call(lambda: self._counts["heartbeat"])

    @property
    def rate_limited(self) -> int:
        """How many 429s were answered, injected ones included."""
        return self._call(lambda: self._counts["rate_limited"])

    @property
    def intents(self) -> int | None:
        """The intents of the latest IDENTIFY."""
        return self._call(lambda: self._last_intents)

    @property
    def presence(self) -> Json | None:
        """The latest op 3 presence update."""
        return self._call(lambda: self._presence)

    @property
    def voice_state_requests(self) -> list[Json]:
        """Every op 4 payload the bot sent, in order."""
        return self._call(lambda: [dict(v) for v in self._voice_requests])

    @property
    def voice_endpoint(self) -> str:
        """What VOICE_SERVER_UPDATE names: ``127.0.0.1:PORT`` of the TLS voice gateway."""
        self._voice_available()
        return f"127.0.0.1:{self._voice_port}"

    @property
    def voice_ca_file(self) -> str:
        """The voice gateway's self-signed certificate (PEM), for ``point_discord_py_voice``."""
        self._voice_available()
        assert self._cert_file is not None
        return self._cert_file

    @property
    def voice_udp_port(self) -> int:
        """The UDP port of IP discovery and RTP, as the voice READY says."""
        return self._udp_port

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

        def view() -> Json | None:
            vs = self._bot_voice
            if vs is None:
                return None
            return {
                "channel_id": vs.channel_id,
                "ssrc": vs.ssrc,
                "mode": vs.mode,
                "max_dave_protocol_version": vs.identify.get("max_dave_protocol_version"),
                "dave_protocol_version": 0,
                "version": vs.version,
                "address": vs.address,
                "discovered": vs.discovered,
                "ready": vs.key is not None,
                "connected": vs.open,
                "left": vs.left,
                "close_code": vs.close_code,
                "speaking": [dict(x) for x in vs.speaking],
                "other_ops": [dict(x) for x in vs.other_ops],
                "heartbeats": vs.heartbeats,
                "last_heartbeat": json.loads(json.dumps(vs.last_heartbeat)),
                "resumes": vs.resumes,
                "binary_frames": vs.binary_frames,
                "keepalives": vs.keepalives,
                "packets": vs.packets,
                "undecryptable": vs.undecryptable,
                "user_ssrcs": {uid: st.ssrc for uid, st in self._streams.items()},
            }

        return self._call(view)

    @property
    def requests(self) -> list[RequestRecord]:
        return self._call(lambda: list(self._requests))

    @property
    def errors(self) -> list[str]:
        """Tracebacks of exceptions inside the server itself (a bug here, not in the bot)."""
        return self._call(lambda: list(self._errors))

    @property
    def commands(self) -> list[Json]:
        """Registered application commands: global ones, then guild ones (with guild_id)."""

        def collect() -> list[Json]:
            return [
                json.loads(json.dumps(c))
                for scope in self._commands.values()
                for c in scope.values()
            ]

        return self._call(collect)

    # ------------------------------------------------------------------ world building

    def add_user(self, name: str, *, bot: bool = False) -> int:
        """Add a user who is also a member of the guild; returns the user id."""
        return self._call(lambda: self._add_user(self._ids.next(), name, bot=bot))

    def add_channel(self, name: str) -> int:
        """Add a guild text channel; returns its id."""
        return self._call(lambda: self._add_channel(name, "text"))

    def add_voice_channel(self, name: str) -> int:
        """Add a guild voice channel; returns its id."""
        return self._call(lambda: self._add_channel(name, "voice"))

    def dm_channel(self, user_id: int) -> int:
        """The DM channel between the bot and ``user_id``, created on first use."""
        return self._call(lambda: self._dm_for(user_id))

    def set_voice_state(self, user_id: int, channel_id: int | None) -> None:
        """Move a user into (or, with None, out of) a voice channel; dispatches VOICE_STATE_UPDATE."""
        self._call(lambda: self._set_voice(user_id, channel_id, {}))

    def leave_voice(self, user_id: int) -> None:
        """Take a user out of voice: CLIENT_DISCONNECT (op 13) to the bot's voice session if
        they shared its channel, and VOICE_STATE_UPDATE with ``channel_id`` null.

        The same as ``set_voice_state(user_id, None)``.
        """
        self.set_voice_state(user_id, None)

    def _add_user(self, uid: int, name: str, *, bot: bool) -> int:
        self._users[uid] = _User(uid, name, bot)
        self._joined[uid] = time.time()
        if self._loop is not None:
            member = {"guild_id": str(self.guild_id), **self._member_json(uid)}
            self._dispatch(
                "GUILD_MEMBER_ADD", lambda s: member if s.intents & Intent.GUILD_MEMBERS else None
            )
        return uid

    def _add_channel(self, name: str, kind: str) -> int:
        cid = self._ids.next()
        position = sum(1 for c in self._channels.values() if c.kind == kind)
        self._channels[cid] = ch = _Channel(cid, kind, name, position)
        if self._loop is not None:
            data = self._channel_json(ch)
            self._dispatch("CHANNEL_CREATE", lambda s: data if s.intents & Intent.GUILDS else None)
        return cid

    def _dm_for(self, user_id: int) -> int:
        self._user(user_id)
        if user_id not in self._dms:
            cid = self._ids.next()
            self._channels[cid] = _Channel(cid, "dm", "", recipient_id=user_id)
            self._dms[user_id] = cid
        return self._dms[user_id]

    # ------------------------------------------------------------------ test controls

    def set_online(self, online: bool) -> None:
        """Offline: live sockets drop (1001), upgrades get 503, and nothing is dispatched.

        REST stays up. Messages posted while offline are stored but never replayed, so a bot
        must read them back from channel history once it is connected again.
        """
        self._call_async(lambda: self._set_online(online))

    def outage(self, seconds: float) -> None:
        """Go offline now and come back after ``seconds``; returns at once."""

        async def down() -> None:
            await self._set_online(False)
            asyncio.get_running_loop().call_later(seconds, self._go_online)

        self._call_async(down)

    def disconnect(self, code: int = 4000, *, resumable: bool = True) -> None:
        """Close the live gateway sockets with ``code``; discord.py reconnects and RESUMEs.

        With ``resumable=False`` the sessions are forgotten first, so the RESUME is answered
        with INVALID_SESSION and discord.py has to IDENTIFY again (a second READY).
        """

        async def close_all() -> None:
            if not resumable:
                self._sessions.clear()
            for conn in list(self._conns):
                await self._close_conn(conn, code)

        self._call_async(close_all)

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
        inj = _Injection(method.upper(), re.compile(path_regex), status, times, retry_after, html)
        self._call(lambda: self._injections.append(inj))

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
            self._user(author_id)
            ch = self._channel(channel_id)
            if reply_to is not None:
                self._message(channel_id, reply_to)
            m = self._new_message(ch, author_id, content, reference_id=reply_to)
            if mention_bot and self.bot_id not in m.mentions:
                m.mentions.append(self.bot_id)
            m.attachments = [self._store_attachment(ch.id, name, data) for name, data in files]
            self._store(m)
            return self._public(m)

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
        return self._call(lambda: self._start_speaking(user_id, channel_id, pcm, fast))

    def voice_packets(self, channel_id: int) -> list[RtpRecord]:
        """Every RTP packet the bot sent while in ``channel_id``, in arrival order, decrypted."""
        return self._call(lambda: list(self._voice_audio.get(channel_id, [])))

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
            m = self._message(channel_id, message_id)
            self._apply_edit(m, {"content": content})
            return self._public(m)

        return self._call(run)

    def delete(self, channel_id: int, message_id: int) -> None:
        """Delete a message; dispatches MESSAGE_DELETE."""
        self._call(lambda: self._delete(self._message(channel_id, message_id)))

    def messages(self, channel_id: int) -> list[Json]:
        """The channel as it is now, oldest first; each has ``edits`` and ``history``."""
        return self._call(lambda: [self._public(m) for m in self._channel(channel_id).messages])

    def message(self, message_id: int) -> Json:
        """One message (ephemeral ones included) with ``edits`` and ``history``."""

        def run() -> Json:
            m = self._msgs.get(message_id)
            if m is None:
                raise KeyError(f"no message {message_id}")
            return self._public(m)

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
            lambda: self._interact(name, user_id, channel_id, options or {}, subcommand, guild)
        )

    def click(
        self, message_id: int, custom_id: str, *, user_id: int, values: list[str] | None = None
    ) -> str:
        """Dispatch a component interaction on a bot message; returns the interaction id."""
        return self._call(lambda: self._click(message_id, custom_id, user_id, values))

    def interaction(self, interaction_id: int | str) -> Json:
        """What the bot answered: callbacks, the original response as it is now, followups."""
        return self._call(lambda: self._interaction_view(int(interaction_id)))

    # ------------------------------------------------------------------ lookups

    def _user(self, uid: int) -> _User:
        try:
            return self._users[uid]
        except KeyError:
            raise _not_found("User", 10013) from None

    def _channel(self, cid: int) -> _Channel:
        try:
            return self._channels[cid]
        except KeyError:
            raise _not_found("Channel", 10003) from None

    def _message(self, cid: int, mid: int) -> _Msg:
        m = self._msgs.get(mid)
        if m is None or m.channel_id != cid or m.deleted:
            raise _not_found("Message", 10008)
        return m

    # ------------------------------------------------------------------ JSON shapes

    def _user_json(self, uid: int) -> Json:
        u = self._user(uid)
        return {
            "id": str(u.id),
            "username": u.name,
            "discriminator": "0",
            "global_name": u.name,
            "avatar": None,
            "bot": u.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
        }

    def _member_json(self, uid: int, *, with_user: bool = True) -> Json:
        member: Json = {
            "roles": [str(self.bot_role_id)] if uid == self.bot_id else [],
            "joined_at": _iso(self._joined.get(uid, time.time())),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self._user_json(uid)
        return member

    def _channel_json(self, ch: _Channel) -> Json:
        if ch.kind == "dm":
            assert ch.recipient_id is not None
            return {
                "id": str(ch.id),
                "type": 1,
                "flags": 0,
                "last_message_id": str(ch.messages[-1].id) if ch.messages else None,
                "recipients": [self._user_json(ch.recipient_id)],
            }
        data: Json = {
            "id": str(ch.id),
            "type": 0 if ch.kind == "text" else 2,
            "guild_id": str(self.guild_id),
            "name": ch.name,
            "position": ch.position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "rate_limit_per_user": 0,
            "last_message_id": str(ch.messages[-1].id) if ch.messages else None,
        }
        if ch.kind == "text":
            data["topic"] = None
        else:
            data.update(bitrate=64000, user_limit=0, rtc_region=None)
        return data

    def _guild_json(self) -> Json:
        return {
            "id": str(self.guild_id),
            "name": "Hex Test Guild",
            "icon": None,
            "owner_id": str(self.owner_id),
            "unavailable": False,
            "large": False,
            "member_count": len(self._users),
            "joined_at": _iso(self._joined[self.bot_id]),
            "preferred_locale": "en-US",
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "system_channel_id": str(self.general_channel_id),
            "roles": [
                {
                    "id": str(self.guild_id),
                    "name": "@everyone",
                    "permissions": str(_EVERYONE_PERMS),
                    "position": 0,
                },
                {
                    "id": str(self.bot_role_id),
                    "name": "Hex",
                    "permissions": str(_BOT_PERMS),
                    "position": 1,
                    "managed": True,
                    "tags": {"bot_id": str(self.bot_id)},
                },
            ],
            "emojis": [],
            "stickers": [],
            "channels": [self._channel_json(c) for c in self._channels.values() if c.kind != "dm"],
            "threads": [],
            "members": [self._member_json(uid) for uid in self._users],
            "voice_states": [dict(v) for v in self._voice.values()],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        }

    def _app_json(self) -> Json:
        return {
            "id": str(self.app_id),
            "name": self._users[self.bot_id].name,
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": self._user_json(self.owner_id),
            "team": None,
            "verify_key": "0" * 64,
            "flags": self._app_flags(),
            "summary": "",
            "bot": self._user_json(self.bot_id),
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": 1,
        }

    def _app_flags(self) -> int:
        # The _LIMITED gateway flags are what an unverified bot in under 100 guilds has.
        flags = 1 << 23 if self._commands else 0
        for intent, flag in (
            (Intent.GUILD_PRESENCES, 13),
            (Intent.GUILD_MEMBERS, 15),
            (Intent.MESSAGE_CONTENT, 19),
        ):
            if self.approved_intents & intent:
                flags |= 1 << flag
        return flags

    def _is_guild(self, m: _Msg) -> bool:
        return self._channels[m.channel_id].kind != "dm"

    def _message_json(
        self,
        m: _Msg,
        *,
        gateway: bool = False,
        blank: Callable[[_Msg], bool] | None = None,
        nested: bool = False,
    ) -> Json:
        guild = self._is_guild(m)
        hidden = blank is not None and blank(m)
        data: Json = {
            "id": str(m.id),
            "channel_id": str(m.channel_id),
            "author": self._user_json(m.author_id),
            "content": "" if hidden else m.content,
            "timestamp": _iso(m.created),
            "edited_timestamp": _iso(m.edited) if m.edited else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [] if hidden else [dict(a) for a in m.attachments],
            "embeds": [] if hidden else json.loads(json.dumps(m.embeds)),
            "components": [] if hidden else json.loads(json.dumps(m.components)),
            "pinned": False,
            "type": m.type,
            "flags": m.flags,
        }
        for uid in m.mentions:
            mention = self._user_json(uid)
            if gateway and guild:
                mention["member"] = self._member_json(uid, with_user=False)
            data["mentions"].append(mention)
        if gateway and guild:
            data["guild_id"] = str(self.guild_id)
            if m.webhook_id is None:
                data["member"] = self._member_json(m.author_id, with_user=False)
        if m.nonce is not None:
            data["nonce"] = m.nonce
        if m.webhook_id is not None:
            data["webhook_id"] = str(m.webhook_id)
            data["application_id"] = str(self.app_id)
        if m.interaction_metadata is not None:
            data["interaction_metadata"] = m.interaction_metadata
        if m.reactions:
            data["reactions"] = [
                {
                    "emoji": {"id": None, "name": e},
                    "count": len(who),
                    "me": self.bot_id in who,
                    "count_details": {"burst": 0, "normal": len(who)},
                    "burst_colors": [],
                    "me_burst": False,
                }
                for e, who in m.reactions.items()
                if who
            ]
        if m.reference_id is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": str(m.reference_id),
                "channel_id": str(m.channel_id),
            }
            if guild:
                data["message_reference"]["guild_id"] = str(self.guild_id)
            if not nested:
                ref = self._msgs.get(m.reference_id)
                data["referenced_message"] = (
                    None
                    if ref is None or ref.deleted
                    else self._message_json(ref, gateway=gateway, blank=blank, nested=True)
                )
        return data

    def _public(self, m: _Msg) -> Json:
        data = self._message_json(m)
        data.update(edits=m.edits, history=list(m.history), ephemeral=bool(m.flags & _EPHEMERAL))
        return data

    # ------------------------------------------------------------------ messages

    def _mentions_in(self, content: str) -> list[int]:
        found = [int(x) for x in re.findall(r"<@!?(\d+)>", content)]
        return [uid for uid in dict.fromkeys(found) if uid in self._users]

    def _new_message(self, ch: _Channel, author_id: int, content: str, **fields: Any) -> _Msg:
        m = _Msg(self._ids.next(), ch.id, author_id, content, time.time(), **fields)
        m.mentions = self._mentions_in(content)
        if m.reference_id is not None and m.type == 0:
            m.type = 19
        return m

    def _store(self, m: _Msg) -> None:
        self._msgs[m.id] = m
        if m.visible:
            self._channels[m.channel_id].messages.append(m)
            self._dispatch_message("MESSAGE_CREATE", m)

    def _dispatch_message(self, event: str, m: _Msg) -> None:
        dm = not self._is_guild(m)
        need = Intent.DIRECT_MESSAGES if dm else Intent.GUILD_MESSAGES

        def build(s: _Session) -> Json | None:
            if not s.intents & need:
                return None

            # Discord's MESSAGE_CONTENT rule: DMs, mentions of the bot and its own messages keep content.
            def blank(x: _Msg) -> bool:
                return (
                    not s.intents & Intent.MESSAGE_CONTENT
                    and not dm
                    and self.bot_id not in x.mentions
                    and x.author_id != self.bot_id
                )

            return self._message_json(m, gateway=True, blank=blank)

        self._dispatch(event, build)

    def _apply_edit(self, m: _Msg, body: Json, files: Iterable[tuple[str, bytes]] = ()) -> None:
        if "content" in body:
            content = body["content"] or ""
            self._check_length(content)
            if content != m.content:
                m.history.append(m.content)
                m.content = content
                m.mentions = self._mentions_in(content)
        if "embeds" in body:
            m.embeds = list(body["embeds"] or [])
        if "components" in body:
            m.components = list(body["components"] or [])
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or []}
            m.attachments = [a for a in m.attachments if a["id"] in keep]
        m.attachments += [self._store_attachment(m.channel_id, n, d) for n, d in files]
        m.flags &= ~_LOADING
        m.edits += 1
        m.edited = time.time()
        if m.visible:
            self._dispatch_message("MESSAGE_UPDATE", m)

    def _delete(self, m: _Msg) -> None:
        m.deleted = True
        if m.visible:
            self._channels[m.channel_id].messages.remove(m)
            data: Json = {"id": str(m.id), "channel_id": str(m.channel_id)}
            if self._is_guild(m):
                data["guild_id"] = str(self.guild_id)
            self._dispatch("MESSAGE_DELETE", lambda s: data)

    def _check_length(self, content: str) -> None:
        if len(content) > _MAX_CONTENT:
            raise _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {_MAX_CONTENT} or fewer in length."
            )

    def _store_attachment(self, cid: int, name: str, data: bytes) -> Json:
        aid = self._ids.next()
        self._files[aid] = (name, data)
        url = f"http://127.0.0.1:{self._port}/attachments/{cid}/{aid}/{name}"
        return {
            "id": str(aid),
            "filename": name,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        }

    def _message_from_body(
        self, ch: _Channel, author_id: int, body: Json, files: list[tuple[str, bytes]]
    ) -> _Msg:
        content = body.get("content") or ""
        self._check_length(content)
        embeds, components = body.get("embeds") or [], body.get("components") or []
        if not (
            content or embeds or components or files or body.get("sticker_ids") or body.get("poll")
        ):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        ref_id = None
        ref = body.get("message_reference")
        if ref and ref.get("message_id"):
            target = self._msgs.get(int(ref["message_id"]))
            if target is not None and not target.deleted:
                ref_id = target.id
            elif ref.get("fail_if_not_exists", True):
                raise _form_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        m = self._new_message(ch, author_id, content, reference_id=ref_id, nonce=body.get("nonce"))
        m.embeds, m.components = list(embeds), list(components)
        m.flags = int(body.get("flags") or 0) & ~(_EPHEMERAL | _LOADING)
        m.attachments = [self._store_attachment(ch.id, name, data) for name, data in files]
        return m

    # ------------------------------------------------------------------ dispatching

    def _dispatch(self, event: str, build: Callable[[_Session], Json | None]) -> None:
        """Send an event to every session that should see it; offline, nobody does."""
        if not self._online:
            return
        for session in list(self._sessions.values()):
            data = build(session)
            if data is not None:
                self._send_dispatch(session, event, data)

    def _send_dispatch(self, session: _Session, event: str, data: Json) -> None:
        # Buffered whether or not a socket is attached, so RESUME can replay it.
        session.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.buffer.append((session.seq, frame))
        if session.conn is not None:
            session.conn.send(frame)

    def _set_voice(
        self, uid: int, cid: int | None, extra: Json, session_id: str | None = None
    ) -> None:
        self._user(uid)
        if cid is not None and self._channel(cid).kind != "voice":
            raise ValueError(f"channel {cid} is not a voice channel")
        state: Json = {
            "guild_id": str(self.guild_id),
            "channel_id": None if cid is None else str(cid),
            "user_id": str(uid),
            "member": self._member_json(uid),
            "session_id": session_id or secrets.token_hex(16),
            "deaf": False,
            "mute": False,
            "self_deaf": False,
            "self_mute": False,
            "self_video": False,
            "self_stream": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
            **extra,
        }
        before = self._voice.get(uid)
        was = int(before["channel_id"]) if before is not None else None
        if cid is None:
            self._voice.pop(uid, None)
        else:
            self._voice[uid] = state
        if uid != self.bot_id and was != cid:
            self._voice_member_moved(uid, was, cid)
        mine = uid == self.bot_id
        self._dispatch(
            "VOICE_STATE_UPDATE",
            lambda s: state if mine or s.intents & Intent.GUILD_VOICE_STATES else None,
        )

    async def _set_online(self, online: bool) -> None:
        self._online = online
        if not online:
            for conn in list(self._conns):
                await self._close_conn(conn, 1001)

    def _go_online(self) -> None:
        self._online = True

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if not self._online:
            self._requests.append(RequestRecord(time.monotonic(), "GET", GATEWAY_PATH, None, 503))
            return web.Response(
                status=503, text="Service Unavailable", headers={"Via": "1.1 google"}
            )
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._requests.append(RequestRecord(time.monotonic(), "GET", GATEWAY_PATH, None, 101))
        conn = _Conn(ws)
        self._conns.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        conn.send(
            {
                "op": 10,
                "s": None,
                "t": None,
                "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fakediscord"]},
            }
        )
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    await self._on_frame(conn, json.loads(msg.data))
                except Exception:
                    self._record_error()
        finally:
            self._conns.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            conn.queue.put_nowait(None)
            await writer
        return ws

    async def _writer(self, conn: _Conn) -> None:
        while (frame := await conn.queue.get()) is not None:
            if conn.ws.closed:
                break
            try:
                await conn.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                break

    async def _close_conn(self, conn: _Conn, code: int, reason: bytes = b"") -> None:
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None
        conn.session = None
        self._conns.discard(conn)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code=code, message=reason), 5)

    async def _on_frame(self, conn: _Conn, frame: Json) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            self._counts["heartbeat"] += 1
            conn.send({"op": 11, "s": None, "t": None, "d": None})
        elif op == 2:
            await self._identify(conn, d or {})
        elif op == 6:
            await self._resume(conn, d or {})
        elif conn.session is None:
            await self._close_conn(conn, 4003, b"Not authenticated.")
        elif op == 3:
            self._presence = d
        elif op == 4:
            self._voice_requests.append(d or {})
            if d and str(d.get("guild_id")) == str(self.guild_id):
                await self._bot_voice_request(conn.session, d)
        elif op == 8:
            self._members_chunk(conn.session, d or {})
        else:
            await self._close_conn(conn, 4001, b"Unknown opcode.")

    async def _identify(self, conn: _Conn, d: Json) -> None:
        if conn.session is not None:
            await self._close_conn(conn, 4005, b"Already authenticated.")
            return
        if d.get("token") != self.token:
            await self._close_conn(conn, 4004, b"Authentication failed.")
            return
        intents = d.get("intents")
        if not isinstance(intents, int):
            await self._close_conn(conn, 4013, b"Invalid intent(s).")
            return
        if intents & Intent.PRIVILEGED & ~self.approved_intents:
            await self._close_conn(conn, 4014, b"Disallowed intent(s).")
            return
        self._counts["identify"] += 1
        self._last_intents = intents
        # A fresh IDENTIFY means the client gave up on its detached sessions.
        for sid in [sid for sid, s in self._sessions.items() if s.conn is None]:
            del self._sessions[sid]
        session = _Session(secrets.token_hex(16), intents, conn=conn)
        self._sessions[session.id] = session
        conn.session = session
        me = {**self._user_json(self.bot_id), "verified": True, "mfa_enabled": False, "email": None}
        ready: Json = {
            "v": 10,
            "user": me,
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": self._app_flags()},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fakediscord"],
        }
        if "shard" in d:
            ready["shard"] = d["shard"]
        self._send_dispatch(session, "READY", ready)
        self._send_dispatch(session, "GUILD_CREATE", self._guild_json())

    async def _resume(self, conn: _Conn, d: Json) -> None:
        if d.get("token") != self.token:
            await self._close_conn(conn, 4004, b"Authentication failed.")
            return
        session = self._sessions.get(str(d.get("session_id")))
        seq = d.get("seq") or 0
        oldest = session.buffer[0][0] if session is not None and session.buffer else 1
        if session is None or seq > session.seq or seq < oldest - 1:
            conn.send({"op": 9, "s": None, "t": None, "d": False})
            return
        if session.conn is not None and session.conn is not conn:
            session.conn.session = None
        session.conn = conn
        conn.session = session
        for s, frame in session.buffer:
            if s > seq:
                conn.send(frame)
        self._counts["resume"] += 1
        self._send_dispatch(session, "RESUMED", {"_trace": ["fakediscord"]})

    def _members_chunk(self, session: _Session, d: Json) -> None:
        query = str(d.get("query") or "").lower()
        wanted = d.get("user_ids")
        if wanted is not None:
            wanted = {str(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
        uids = [
            u
            for u in self._users
            if (wanted is None or str(u) in wanted)
            and self._users[u].name.lower().startswith(query)
        ]
        if d.get("limit"):
            uids = uids[: int(d["limit"])]
        self._send_dispatch(
            session,
            "GUILD_MEMBERS_CHUNK",
            {
                "guild_id": str(self.guild_id),
                "members": [self._member_json(u) for u in uids],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
                "nonce": d.get("nonce"),
            },
        )

    # ------------------------------------------------------------------ voice: main gateway side

    def _voice_available(self) -> None:
        if self._loop is None:
            raise RuntimeError("FakeDiscord is not started")
        if self._voice_error is not None:
            raise RuntimeError(self._voice_error)

    async def _bot_voice_request(self, session: _Session, d: Json) -> None:
        """Op 4 from the bot: its voice state, then a voice server when it needs a new one."""
        cid = int(d["channel_id"]) if d.get("channel_id") else None
        before = self._voice.get(self.bot_id)
        was = int(before["channel_id"]) if before is not None else None
        extra = {"self_mute": bool(d.get("self_mute")), "self_deaf": bool(d.get("self_deaf"))}
        self._set_voice(self.bot_id, cid, extra, session_id=session.id)
        vs = self._bot_voice
        if cid is None:
            self._voice_token = None
            if vs is not None and not vs.left:
                vs.left = True
                if vs.open:
                    # Discord's 4014: disconnected from the channel, do not reconnect.
                    await self._close_conn(vs.conn, 4014, b"Disconnected.")
            return
        if cid == was and vs is not None and vs.open and not vs.left and vs.channel_id == cid:
            return  # a mute or deafen change: same channel, same voice server
        self._voice_token = secrets.token_hex(8)
        endpoint = None if self._voice_error else f"127.0.0.1:{self._voice_port}"
        if endpoint is None:
            _log.warning("fakediscord: no voice endpoint to give: %s", self._voice_error)
        self._send_dispatch(
            session,
            "VOICE_SERVER_UPDATE",
            {"token": self._voice_token, "guild_id": str(self.guild_id), "endpoint": endpoint},
        )
        if vs is not None and vs.open and vs.channel_id != cid:
            # A move: Discord drops the old voice socket with 4014, and discord.py's voice poller
            # answers that by dialling the new server (it does not on VOICE_SERVER_UPDATE alone).
            await self._close_conn(vs.conn, 4014, b"Disconnected.")

    def _voice_member_moved(self, uid: int, was: int | None, cid: int | None) -> None:
        # A user's SSRC belongs to one voice connection; a new channel means a new one.
        self._streams.pop(uid, None)
        vs = self._bot_voice
        if vs is None or not vs.open or vs.left or vs.key is None:
            return  # the SESSION_DESCRIPTION's CLIENTS_CONNECT lists whoever is there by then
        if cid == vs.channel_id:
            self._voice_send(vs, 11, {"user_ids": [str(uid)]})
        elif was == vs.channel_id:
            self._voice_send(vs, 13, {"user_id": str(uid)})

    def _new_ssrc(self) -> int:
        self._next_ssrc += 1 + secrets.randbelow(16)
        return self._next_ssrc

    # ------------------------------------------------------------------ voice: voice gateway

    def _voice_send(self, vs: _VoiceSession, op: int, d: Json) -> None:
        # Voice gateway v8 numbers the server's messages; heartbeats carry the last as seq_ack.
        vs.seq += 1
        vs.conn.send({"op": op, "d": d, "seq": vs.seq})

    async def _voice_gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Conn(ws)
        self._voice_conns.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        conn.send({"op": 8, "d": {"v": 8, "heartbeat_interval": float(self.heartbeat_interval_ms)}})
        version = request.query.get("v", "")
        vs: _VoiceSession | None = None
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    if vs is not None:
                        vs.binary_frames += 1
                    continue
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    vs = await self._on_voice_frame(conn, vs, json.loads(msg.data), version)
                except Exception:
                    self._record_error()
        finally:
            self._voice_conns.discard(conn)
            if vs is not None and vs.conn is conn:
                vs.open = False
                vs.close_code = ws.close_code
            conn.queue.put_nowait(None)
            await writer
        return ws

    async def _on_voice_frame(
        self, conn: _Conn, vs: _VoiceSession | None, frame: Json, version: str
    ) -> _VoiceSession | None:
        op, d = frame.get("op"), frame.get("d")
        if op == 3:
            if vs is not None:
                vs.heartbeats += 1
                vs.last_heartbeat = d
            conn.send({"op": 6, "d": {"t": d.get("t")} if isinstance(d, dict) else d})
            return vs
        if op in (0, 7) and vs is not None:
            await self._close_conn(conn, 4005, b"Already authenticated.")
            return vs
        if op == 0:
            return await self._voice_identify(conn, d or {}, version)
        if op == 7:
            return await self._voice_resume(conn, d or {})
        if vs is None:
            await self._close_conn(conn, 4003, b"Not authenticated.")
            return None
        if op == 1:
            await self._select_protocol(vs, d or {})
        elif op == 5:
            vs.speaking.append(d or {})
        elif op in (12, 23, 31):
            # Client connect with its audio SSRC, and DAVE acknowledgements: noted, no reply.
            vs.other_ops.append({"op": op, "d": d})
        else:
            await self._close_conn(conn, 4001, b"Unknown opcode.")
        return vs

    async def _voice_identify(self, conn: _Conn, d: Json, version: str) -> _VoiceSession | None:
        state = self._voice.get(self.bot_id)
        if (
            self._voice_token is None
            or d.get("token") != self._voice_token
            or str(d.get("server_id")) != str(self.guild_id)
            or str(d.get("user_id")) != str(self.bot_id)
            or state is None
            or state["channel_id"] is None
            or d.get("session_id") != state["session_id"]
        ):
            await self._close_conn(conn, 4004, b"Authentication failed.")
            return None
        old = self._bot_voice
        if old is not None and old.open and old.conn is not conn:
            await self._close_conn(old.conn, 4014, b"Disconnected.")
        vs = _VoiceSession(
            token=self._voice_token,
            session_id=str(state["session_id"]),
            channel_id=int(state["channel_id"]),
            ssrc=self._new_ssrc(),
            conn=conn,
            identify={k: v for k, v in d.items() if k != "token"},
            version=version,
        )
        self._bot_voice = vs
        ready = {
            "ssrc": vs.ssrc,
            "ip": "127.0.0.1",
            "port": self._udp_port,
            "modes": list(VOICE_MODES),
            "experiments": [],
        }
        self._voice_send(vs, 2, ready)
        return vs

    async def _voice_resume(self, conn: _Conn, d: Json) -> _VoiceSession | None:
        vs = self._bot_voice
        if (
            vs is None
            or vs.left
            or d.get("token") != vs.token
            or d.get("session_id") != vs.session_id
            or str(d.get("server_id")) != str(self.guild_id)
        ):
            await self._close_conn(conn, 4006, b"Session is no longer valid.")
            return None
        if vs.open and vs.conn is not conn:
            await self._close_conn(vs.conn, 4014, b"Disconnected.")
        vs.conn, vs.open, vs.close_code = conn, True, None
        vs.resumes += 1
        conn.send({"op": 9, "d": None})
        return vs

    async def _select_protocol(self, vs: _VoiceSession, d: Json) -> None:
        data = d.get("data") or {}
        if d.get("protocol") != "udp":
            await self._close_conn(vs.conn, 4012, b"Unknown protocol.")
            return
        mode = data.get("mode")
        if mode not in VOICE_MODES:
            await self._close_conn(vs.conn, 4016, b"Unknown encryption mode.")
            return
        if mode != _XCHACHA:
            # Offered as Discord does, but PyNaCl has no AES-GCM: a limit of this fake.
            self._errors.append(f"fakediscord cannot serve voice mode {mode!r}")
            await self._close_conn(vs.conn, 4016, b"Unknown encryption mode.")
            return
        vs.mode = mode
        vs.address = (str(data["address"]), int(data["port"]))
        vs.key = secrets.token_bytes(32)
        self._voice_send(
            vs,
            4,
            {
                "audio_codec": "opus",
                "video_codec": "H264",
                "media_session_id": secrets.token_hex(16),
                "mode": mode,
                "secret_key": list(vs.key),
                # 0: not end-to-end encrypted (no DAVE), transport encryption only.
                "dave_protocol_version": 0,
            },
        )
        others = [
            str(uid)
            for uid, st in self._voice.items()
            if uid != self.bot_id and st["channel_id"] == str(vs.channel_id)
        ]
        if others:
            self._voice_send(vs, 11, {"user_ids": others})

    # ------------------------------------------------------------------ voice: UDP

    def _on_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        from nacl.exceptions import CryptoError

        assert self._udp is not None
        vs = self._bot_voice
        if len(data) == 74 and data[:4] == b"\x00\x01\x00\x46":
            (ssrc,) = struct.unpack_from(">I", data, 4)
            if vs is None or vs.ssrc != ssrc:
                return
            vs.discovered = addr
            self._udp.sendto(struct.pack(">HHI64sH", 2, 70, ssrc, addr[0].encode(), addr[1]), addr)
        elif len(data) >= 12 and data[0] >> 6 == 2 and not 200 <= data[1] <= 204:
            sequence, timestamp, ssrc = struct.unpack_from(">HII", data, 2)
            if vs is None or vs.ssrc != ssrc or vs.key is None:
                return
            try:
                opus = _open_rtp(data, vs.key)
            except (CryptoError, ValueError, struct.error):
                vs.undecryptable += 1
                return
            vs.packets += 1
            record = RtpRecord(time.monotonic(), ssrc, sequence, timestamp, opus)
            self._voice_audio.setdefault(vs.channel_id, []).append(record)
        elif len(data) == 8 and vs is not None and addr in (vs.address, vs.discovered):
            vs.keepalives += 1  # discord-ext-voice-recv's UDP keepalive; Discord does not echo it

    def _start_speaking(
        self, uid: int, cid: int, pcm: bytes, fast: bool
    ) -> concurrent.futures.Future[int]:
        self._voice_available()
        self._user(uid)
        if self._channel(cid).kind != "voice":
            raise ValueError(f"channel {cid} is not a voice channel")
        state = self._voice.get(uid)
        if state is None or state["channel_id"] != str(cid):
            raise ValueError(f"user {uid} is not in voice channel {cid}: set_voice_state first")
        vs = self._bot_voice
        if vs is None or not vs.open or vs.left or vs.channel_id != cid or vs.key is None:
            raise RuntimeError(
                f"the bot has no ready voice connection in channel {cid} to hear user {uid} "
                "(wait for voice_connection['ready'])"
            )
        stream = self._streams.get(uid)
        if stream is None:
            stream = _Stream(
                self._new_ssrc(), secrets.randbelow(1 << 15), secrets.randbelow(1 << 31)
            )
            self._streams[uid] = stream
        result: concurrent.futures.Future[int] = concurrent.futures.Future()
        task = asyncio.get_running_loop().create_task(self._speak(uid, cid, pcm, fast, vs, stream))

        def done(t: asyncio.Task[int]) -> None:
            self._speakers.discard(t)
            if t.cancelled():
                result.cancel()
            elif (exc := t.exception()) is not None:
                self._errors.append("".join(traceback.format_exception(exc)))
                result.set_exception(exc)
            else:
                result.set_result(t.result())

        self._speakers.add(task)
        task.add_done_callback(done)
        return result

    async def _speak(
        self, uid: int, cid: int, pcm: bytes, fast: bool, vs: _VoiceSession, stream: _Stream
    ) -> int:
        from discord.opus import Encoder

        assert self._udp is not None
        encoder = Encoder(application="voip")
        self._voice_send(vs, 5, {"user_id": str(uid), "ssrc": stream.ssrc, "speaking": 1})
        loop = asyncio.get_running_loop()
        frames = [pcm[i : i + _FRAME_BYTES] for i in range(0, len(pcm), _FRAME_BYTES)]
        start = loop.time() + 0.02  # SPEAKING leads the audio by a frame, as it does on Discord
        sent = 0
        for i in range(len(frames) + _SILENCE_TAIL):
            if fast:
                await asyncio.sleep(0.02 if i == 0 else 0)
            else:
                await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))
            state = self._voice.get(uid)
            if (
                self._bot_voice is not vs
                or not vs.open
                or vs.left
                or vs.key is None
                or vs.address is None
                or state is None
                or state["channel_id"] != str(cid)
            ):
                break
            if i < len(frames):
                opus = encoder.encode(frames[i].ljust(_FRAME_BYTES, b"\0"), _FRAME_SAMPLES)
            else:
                opus = _OPUS_SILENCE
            packet = _seal_rtp(
                stream.ssrc, stream.sequence, stream.timestamp, opus, vs.key, vs.nonce
            )
            vs.nonce = (vs.nonce + 1) & 0xFFFFFFFF
            stream.sequence = (stream.sequence + 1) & 0xFFFF
            stream.timestamp = (stream.timestamp + _FRAME_SAMPLES) & 0xFFFFFFFF
            self._udp.sendto(packet, vs.address)
            sent += 1
        return sent

    def _record_error(self) -> None:
        tb = traceback.format_exc()
        self._errors.append(tb)
        _log.error("fakediscord internal error:\n%s", tb)

    # ------------------------------------------------------------------ HTTP plumbing

    def _build_routes(self) -> list[_Route]:
        ch = r"/channels/(?P<channel_id>\d+)"
        msg = ch + r"/messages/(?P<message_id>\d+)"
        react = msg + r"/reactions/(?P<emoji>[^/]+)/@me"
        guild = r"/guilds/(?P<guild_id>\d+)"
        cmds = r"/applications/(?P<app_id>\d+)(?:/guilds/(?P<guild_id>\d+))?/commands"
        hook = r"/webhooks/(?P<webhook_id>\d+)/(?P<token>[^/]+)"
        hook_msg = hook + r"/messages/(?P<message_id>@original|\d+)"
        table: list[tuple[str, str, _Handler]] = [
            ("GET", r"/users/@me", self._r_me),
            ("GET", r"/users/(?P<user_id>\d+)", self._r_user),
            ("POST", r"/users/@me/channels", self._r_create_dm),
            ("GET", r"/gateway", self._r_gateway),
            ("GET", r"/gateway/bot", self._r_gateway_bot),
            ("GET", r"/oauth2/applications/@me", self._r_app),
            ("GET", r"/applications/@me", self._r_app),
            ("GET", ch, self._r_channel),
            ("POST", ch + r"/typing", self._r_typing),
            ("GET", ch + r"/messages", self._r_history),
            ("POST", ch + r"/messages", self._r_send),
            ("GET", msg, self._r_get_message),
            ("PATCH", msg, self._r_edit),
            ("DELETE", msg, self._r_delete),
            ("PUT", react, self._r_react),
            ("DELETE", react, self._r_unreact),
            ("GET", guild, self._r_guild),
            ("GET", guild + r"/channels", self._r_guild_channels),
            ("GET", guild + r"/members/(?P<user_id>\d+)", self._r_member),
            ("GET", cmds, self._r_commands),
            ("PUT", cmds, self._r_put_commands),
            ("POST", cmds, self._r_post_command),
            ("DELETE", cmds + r"/(?P<command_id>\d+)", self._r_delete_command),
            (
                "POST",
                r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback",
                self._r_callback,
            ),
            ("GET", hook_msg, self._r_hook_get),
            ("PATCH", hook_msg, self._r_hook_edit),
            ("DELETE", hook_msg, self._r_hook_delete),
            ("POST", hook, self._r_followup),
        ]
        # Interaction callbacks and webhooks authenticate by the token in their path; GET /gateway
        # needs no token at all.
        token_paths = ("/interactions/", "/webhooks/")
        return [
            _Route(
                m, re.compile(p), h, f"{m} {p}", p != "/gateway" and not p.startswith(token_paths)
            )
            for m, p, h in table
        ]

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method == method and (found := route.pattern.fullmatch(path)):
                return route, {k: v for k, v in found.groupdict().items() if v is not None}
        return None, {}

    def _bucket(self, route: _Route | None, params: dict[str, str]) -> _Bucket:
        """Per route and per major parameter (channel, guild, webhook), as Discord buckets them."""
        name = route.bucket if route is not None else "unrouted"
        majors = ("channel_id", "guild_id", "webhook_id", "interaction_id", "token")
        key = name + ":" + ":".join(params.get(k, "") for k in majors)
        if key not in self._buckets:
            messages = route is not None and route.handler in (self._r_send, self._r_edit)
            limit, window = self._message_rate if messages else (50, 1.0)
            self._buckets[key] = _Bucket(name, limit, window)
        return self._buckets[key]

    def _take_injection(self, method: str, path: str) -> _Injection | None:
        for inj in self._injections:
            if inj.method == method and inj.pattern.fullmatch(path):
                inj.times -= 1
                if inj.times <= 0:
                    self._injections.remove(inj)
                return inj
        return None

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            files: list[tuple[str, bytes]] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                elif part.filename:
                    files.append((part.filename, bytes(await part.read())))
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None

    async def _http(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "GET" and path.startswith("/attachments/"):
            return self._serve_attachment(path)
        rel = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else path
        now = time.monotonic()
        headers = {"Via": "1.1 google"}
        body: Any = None
        text: str | None = None
        payload: Any = None
        try:
            body, files = await self._read_body(request)
            route, params = self._match(request.method, rel) if rel != path else (None, {})
            bucket = self._bucket(route, params)
            headers.update(bucket.headers(now))
            if route is None:
                raise _ApiError(404, 0, "404: Not Found")
            if route.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise _ApiError(401, 0, "401: Unauthorized")
            injected = self._take_injection(request.method, rel)
            retry = None if injected else bucket.take(now)
            if injected is not None:
                status = injected.status
                if status == 429:
                    payload, text = self._limited(headers, injected.retry_after, injected.html)
                else:
                    phrase = f"{status}: {HTTPStatus(status).phrase}"
                    payload = {"message": phrase, "code": 0}
                    if injected.html:
                        text = f"<html><head><title>{phrase}</title></head><body><h1>{phrase}</h1></body></html>"
            elif retry is not None:
                status = 429
                payload, text = self._limited(headers, retry, False)
                headers.update(
                    {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": f"{retry:.3f}"}
                )
            else:
                headers.update(bucket.headers(now))
                status, payload = await route.handler(
                    _Req(params, dict(request.query), body, files)
                )
        except _ApiError as e:
            status, payload = e.status, e.body
        except Exception:
            self._record_error()
            status, payload = 500, {"message": "500: fakediscord internal error", "code": 0}
        self._requests.append(RequestRecord(now, request.method, rel, body, status))
        if status == 429:
            self._counts["rate_limited"] += 1
        if text is not None:
            return web.Response(status=status, text=text, content_type="text/html", headers=headers)
        if status == 204 or payload is None:
            return web.Response(status=status, headers=headers)
        # Exactly "application/json": discord.py compares the header verbatim, and aiohttp's
        # content_type= would append "; charset=utf-8", turning every answer into a string.
        headers["Content-Type"] = "application/json"
        return web.Response(status=status, body=json.dumps(payload).encode(), headers=headers)

    def _limited(
        self, headers: dict[str, str], retry: float, html: bool
    ) -> tuple[Json, str | None]:
        headers.update({"Retry-After": str(max(1, math.ceil(retry))), "X-RateLimit-Scope": "user"})
        payload = {
            "message": "You are being rate limited.",
            "retry_after": round(retry, 3),
            "global": False,
        }
        if html:  # what a Cloudflare ban looks like; discord.py refuses to retry it
            return (
                payload,
                "<html><head><title>Error 1015</title></head><body>You are being rate limited.</body></html>",
            )
        return payload, None

    def _serve_attachment(self, path: str) -> web.Response:
        parts = path.split("/")
        try:
            name, data = self._files[int(parts[3])]
        except (IndexError, ValueError, KeyError):
            return web.Response(status=404, text="Not Found")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return web.Response(body=data, content_type=ctype)

    # ------------------------------------------------------------------ REST: users, gateway, app

    def _rest_message(self, m: _Msg) -> Json:
        if self.approved_intents & Intent.MESSAGE_CONTENT:
            return self._message_json(m)
        # Without the approved intent Discord blanks content over REST too, with the same exceptions.
        return self._message_json(
            m,
            blank=lambda x: (
                self._is_guild(x) and self.bot_id not in x.mentions and x.author_id != self.bot_id
            ),
        )

    async def _r_me(self, req: _Req) -> _Reply:
        return 200, {
            **self._user_json(self.bot_id),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
            "email": None,
        }

    async def _r_user(self, req: _Req) -> _Reply:
        return 200, self._user_json(int(req.params["user_id"]))

    async def _r_create_dm(self, req: _Req) -> _Reply:
        rid = (req.body or {}).get("recipient_id")
        if rid is None:
            raise _form_error()
        return 200, self._channel_json(self._channels[self._dm_for(int(rid))])

    async def _r_gateway(self, req: _Req) -> _Reply:
        return 200, {"url": self.gateway_url}

    async def _r_gateway_bot(self, req: _Req) -> _Reply:
        limit = {
            "total": 1000,
            "remaining": max(0, 1000 - self._counts["identify"]),
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        }
        return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    async def _r_app(self, req: _Req) -> _Reply:
        return 200, self._app_json()

    # ------------------------------------------------------------------ REST: channels and messages

    async def _r_channel(self, req: _Req) -> _Reply:
        return 200, self._channel_json(self._channel(int(req.params["channel_id"])))

    async def _r_typing(self, req: _Req) -> _Reply:
        self._channel(int(req.params["channel_id"]))
        return 204, None

    async def _r_history(self, req: _Req) -> _Reply:
        msgs = self._channel(int(req.params["channel_id"])).messages
        q = req.query
        try:
            limit = int(q.get("limit", 50))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise _form_error("limit", "NUMBER_TYPE_MAX", "int value should be between 1 and 100.")
        if "around" in q:
            pivot = int(q["around"])
            idx = next((i for i, m in enumerate(msgs) if m.id >= pivot), len(msgs))
            start = max(0, idx - limit // 2)
            selected = msgs[start : start + limit]
        elif "before" in q:
            selected = [m for m in msgs if m.id < int(q["before"])][-limit:]
        elif "after" in q:
            selected = [m for m in msgs if m.id > int(q["after"])][:limit]
        else:
            selected = msgs[-limit:]
        # Newest first, as Discord does, whichever of before/after/around was asked.
        return 200, [self._rest_message(m) for m in reversed(selected)]

    async def _r_get_message(self, req: _Req) -> _Reply:
        return 200, self._rest_message(
            self._message(int(req.params["channel_id"]), int(req.params["message_id"]))
        )

    async def _r_send(self, req: _Req) -> _Reply:
        ch = self._channel(int(req.params["channel_id"]))
        body = req.body or {}
        nonce = body.get("nonce")
        key = (ch.id, self.bot_id, str(nonce))
        if nonce is not None and body.get("enforce_nonce") and key in self._nonces:
            earlier = self._msgs.get(self._nonces[key])
            if earlier is not None and not earlier.deleted:
                return 200, self._message_json(earlier)
        m = self._message_from_body(ch, self.bot_id, body, req.files)
        if nonce is not None:
            self._nonces[key] = m.id
        self._store(m)
        return 200, self._message_json(m)

    async def _r_edit(self, req: _Req) -> _Reply:
        m = self._message(int(req.params["channel_id"]), int(req.params["message_id"]))
        if m.author_id != self.bot_id:
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(m, req.body or {}, req.files)
        return 200, self._message_json(m)

    async def _r_delete(self, req: _Req) -> _Reply:
        m = self._message(int(req.params["channel_id"]), int(req.params["message_id"]))
        if m.author_id != self.bot_id and not self._is_guild(m):
            raise _ApiError(403, 50003, "Cannot execute action on a DM channel")
        self._delete(m)
        return 204, None

    async def _r_react(self, req: _Req) -> _Reply:
        m = self._message(int(req.params["channel_id"]), int(req.params["message_id"]))
        m.reactions.setdefault(req.params["emoji"], set()).add(self.bot_id)
        return 204, None

    async def _r_unreact(self, req: _Req) -> _Reply:
        m = self._message(int(req.params["channel_id"]), int(req.params["message_id"]))
        m.reactions.get(req.params["emoji"], set()).discard(self.bot_id)
        return 204, None

    # ------------------------------------------------------------------ REST: guild

    def _check_guild(self, req: _Req) -> None:
        if int(req.params["guild_id"]) != self.guild_id:
            raise _ApiError(403, 50001, "Missing Access")

    async def _r_guild(self, req: _Req) -> _Reply:
        self._check_guild(req)
        data = self._guild_json()
        for key in (
            "channels",
            "members",
            "voice_states",
            "threads",
            "presences",
            "joined_at",
            "large",
        ):
            data.pop(key, None)
        return 200, data

    async def _r_guild_channels(self, req: _Req) -> _Reply:
        self._check_guild(req)
        return 200, [self._channel_json(c) for c in self._channels.values() if c.kind != "dm"]

    async def _r_member(self, req: _Req) -> _Reply:
        self._check_guild(req)
        uid = int(req.params["user_id"])
        if uid not in self._users:
            raise _not_found("Member", 10007)
        return 200, self._member_json(uid)

    # ------------------------------------------------------------------ REST: application commands

    def _command_scope(self, req: _Req) -> int | None:
        if int(req.params["app_id"]) != self.app_id:
            raise _ApiError(403, 50001, "Missing Access")
        if "guild_id" in req.params:
            self._check_guild(req)
            return self.guild_id
        return None

    def _register(self, scope: int | None, body: Json) -> Json:
        if not isinstance(body, dict) or not body.get("name"):
            raise _form_error()
        cmd: Json = json.loads(json.dumps(body))
        cmd.setdefault("type", 1)
        key = f"{cmd['type']}:{cmd['name']}"
        earlier = self._commands.get(scope, {}).get(key)
        # Discord keeps a command's id when it is overwritten by name.
        cmd["id"] = earlier["id"] if earlier else str(self._ids.next())
        cmd["application_id"] = str(self.app_id)
        cmd["version"] = str(self._ids.next())
        cmd.setdefault("description", "")
        cmd.setdefault("options", [])
        cmd.setdefault("default_member_permissions", None)
        cmd.setdefault("nsfw", False)
        if scope is not None:
            cmd["guild_id"] = str(scope)
        self._commands.setdefault(scope, {})[key] = cmd
        return cmd

    async def _r_commands(self, req: _Req) -> _Reply:
        return 200, list(self._commands.get(self._command_scope(req), {}).values())

    async def _r_put_commands(self, req: _Req) -> _Reply:
        scope = self._command_scope(req)
        if not isinstance(req.body, list):
            raise _form_error()
        earlier = self._commands.get(scope, {})
        fresh: dict[str, Json] = {}
        self._commands[scope] = dict(earlier)
        for body in req.body:
            cmd = self._register(scope, body)
            fresh[f"{cmd['type']}:{cmd['name']}"] = cmd
        self._commands[scope] = fresh
        return 200, list(fresh.values())

    async def _r_post_command(self, req: _Req) -> _Reply:
        scope = self._command_scope(req)
        return 201, self._register(scope, req.body or {})

    async def _r_delete_command(self, req: _Req) -> _Reply:
        scope = self._command_scope(req)
        cmds = self._commands.get(scope, {})
        for key, cmd in list(cmds.items()):
            if cmd["id"] == req.params["command_id"]:
                del cmds[key]
                return 204, None
        raise _not_found("application command", 10063)

    # ------------------------------------------------------------------ interactions: test side

    def _interact(
        self,
        name: str,
        user_id: int,
        channel_id: int,
        values: dict[str, Any],
        subcommand: str | None,
        guild: bool,
    ) -> str:
        self._user(user_id)
        ch = self._channel(channel_id)
        if guild and ch.kind == "dm":
            raise ValueError(f"channel {channel_id} is a DM: pass guild=False")
        if not guild and (ch.kind != "dm" or ch.recipient_id != user_id):
            raise ValueError(
                f"guild=False needs the DM channel of user {user_id} (see dm_channel())"
            )
        cmd = self._commands.get(self.guild_id, {}).get(f"1:{name}") if guild else None
        cmd = cmd or self._commands.get(None, {}).get(f"1:{name}")
        if cmd is None:
            known = sorted(c["name"] for scope in self._commands.values() for c in scope.values())
            raise LookupError(
                f"/{name} is not registered with the fake Discord (registered: {known}); "
                "has the bot synced its command tree?"
            )
        if not guild and (
            cmd.get("dm_permission") is False or 1 not in (cmd.get("contexts") or [1])
        ):
            raise ValueError(f"/{name} is not available in DMs")
        options, resolved = self._build_options(cmd, subcommand, values, guild)
        data: Json = {"id": cmd["id"], "name": name, "type": 1}
        if options:
            data["options"] = options
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in cmd:
            data["guild_id"] = cmd["guild_id"]
        it = self._new_interaction(2, user_id, ch, data, name=name)
        self._dispatch("INTERACTION_CREATE", lambda s: it.payload)
        return str(it.id)

    def _build_options(
        self, cmd: Json, subcommand: str | None, values: dict[str, Any], guild: bool
    ) -> tuple[list[Json], Json]:
        path: list[Json] = []
        defs: list[Json] = cmd.get("options") or []
        for part in (subcommand or "").split():
            node = next((o for o in defs if o["name"] == part and o["type"] in (1, 2)), None)
            if node is None:
                names = [o["name"] for o in defs if o["type"] in (1, 2)]
                raise ValueError(
                    f"/{cmd['name']} has no subcommand or group {part!r} here (has: {names})"
                )
            path.append(node)
            defs = node.get("options") or []
        if any(o["type"] in (1, 2) for o in defs):
            names = [o["name"] for o in defs if o["type"] in (1, 2)]
            raise ValueError(f"/{cmd['name']} needs a subcommand: one of {names}")
        resolved: Json = {}
        leaf: list[Json] = []
        for key, value in values.items():
            spec = next((o for o in defs if o["name"] == key), None)
            if spec is None:
                raise ValueError(
                    f"/{cmd['name']} has no option {key!r} (has: {[o['name'] for o in defs]})"
                )
            leaf.append(
                {
                    "name": key,
                    "type": spec["type"],
                    "value": self._option_value(spec["type"], value, resolved, guild),
                }
            )
        missing = [o["name"] for o in defs if o.get("required") and o["name"] not in values]
        if missing:
            raise ValueError(f"/{cmd['name']} is missing required options {missing}")
        options = leaf
        for node in reversed(path):
            options = [{"name": node["name"], "type": node["type"], "options": options}]
        return options, resolved

    def _option_value(self, kind: int, value: Any, resolved: Json, guild: bool) -> Any:
        if kind in (6, 9) and int(value) in self._users:
            uid = int(value)
            resolved.setdefault("users", {})[str(uid)] = self._user_json(uid)
            if guild:
                member = {
                    **self._member_json(uid, with_user=False),
                    "permissions": str(self._perms(uid)),
                }
                resolved.setdefault("members", {})[str(uid)] = member
            return str(uid)
        if kind == 7:
            ch = self._channel(int(value))
            resolved.setdefault("channels", {})[str(ch.id)] = {
                "id": str(ch.id),
                "name": ch.name,
                "type": {"text": 0, "voice": 2, "dm": 1}[ch.kind],
                "permissions": str(_BOT_PERMS),
                "parent_id": None,
            }
            return str(ch.id)
        if kind in (8, 9):
            role = next(r for r in self._guild_json()["roles"] if r["id"] == str(value))
            resolved.setdefault("roles", {})[str(value)] = role
            return str(value)
        return {4: int, 10: float, 5: bool}.get(kind, str)(value)

    def _perms(self, uid: int) -> int:
        return (
            _BOT_PERMS
            if uid == self.bot_id
            else _EVERYONE_PERMS | (1 << 3 if uid == self.owner_id else 0)
        )

    def _new_interaction(
        self, kind: int, user_id: int, ch: _Channel, data: Json, **fields: Any
    ) -> _Interaction:
        iid = self._ids.next()
        token = secrets.token_urlsafe(64)
        guild = ch.kind != "dm"
        channel = self._channel_json(ch)
        payload: Json = {
            "id": str(iid),
            "application_id": str(self.app_id),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(ch.id),
            "channel": {**channel, "permissions": str(_BOT_PERMS)} if guild else channel,
            "app_permissions": str(_BOT_PERMS),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(self.guild_id) if guild else "0"},
            "context": 0 if guild else 1,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if guild:
            payload.update(
                guild_id=str(self.guild_id),
                guild_locale="en-US",
                guild={"id": str(self.guild_id), "locale": "en-US", "features": []},
                member={**self._member_json(user_id), "permissions": str(self._perms(user_id))},
            )
        else:
            payload["user"] = self._user_json(user_id)
        it = _Interaction(iid, token, kind, time.monotonic(), user_id, ch.id, payload, **fields)
        self._interactions[iid] = it
        self._by_token[token] = it
        return it

    def _click(
        self, message_id: int, custom_id: str, user_id: int, values: list[str] | None
    ) -> str:
        self._user(user_id)
        m = self._msgs.get(message_id)
        if m is None or m.deleted:
            raise KeyError(f"no message {message_id}")
        if m.author_id != self.bot_id:
            raise ValueError("only the bot's messages carry components")
        found = [c for c in _walk_components(m.components) if c.get("custom_id") == custom_id]
        if not found:
            ids = [c["custom_id"] for c in _walk_components(m.components) if "custom_id" in c]
            raise ValueError(f"message {message_id} has no component {custom_id!r} (has: {ids})")
        if found[0].get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        ctype = int(found[0]["type"])
        data: Json = {"custom_id": custom_id, "component_type": ctype}
        if ctype in (3, 5, 6, 7, 8):
            data["values"] = list(values or [])
        ch = self._channels[m.channel_id]
        it = self._new_interaction(3, user_id, ch, data, custom_id=custom_id, clicked_id=m.id)
        it.payload["message"] = self._message_json(m, gateway=True)
        self._dispatch("INTERACTION_CREATE", lambda s: it.payload)
        return str(it.id)

    def _interaction_view(self, iid: int) -> Json:
        it = self._interactions.get(iid)
        if it is None:
            raise KeyError(f"no interaction {iid}")
        original = self._msgs.get(it.original_id) if it.original_id else None
        first = it.callbacks[0]["type"] if it.callbacks else None
        return {
            "id": str(it.id),
            "type": it.type,
            "name": it.name,
            "custom_id": it.custom_id,
            "user_id": it.user_id,
            "channel_id": it.channel_id,
            "callbacks": json.loads(json.dumps(it.callbacks)),
            "response_type": first,
            "deferred": first in (5, 6),
            "ephemeral": bool(
                first in (4, 5) and original is not None and original.flags & _EPHEMERAL
            ),
            "original": self._public(original)
            if original is not None and not original.deleted
            else None,
            "followups": [
                self._public(self._msgs[f]) for f in it.followup_ids if not self._msgs[f].deleted
            ],
        }

    # ------------------------------------------------------------------ interactions: REST side

    def _interaction_message(
        self,
        it: _Interaction,
        body: Json,
        files: list[tuple[str, bytes]],
        *,
        loading: bool = False,
        followup: bool = False,
    ) -> _Msg:
        ch = self._channels[it.channel_id]
        flags = int(body.get("flags") or 0)
        if loading:
            m = _Msg(self._ids.next(), ch.id, self.bot_id, "", time.time())
        else:
            m = self._message_from_body(ch, self.bot_id, body, files)
        m.flags = (flags & ~_LOADING) | (_LOADING if loading else 0)
        m.type = 20 if it.type == 2 and not followup else 0
        m.webhook_id = self.app_id
        m.visible = not m.flags & _EPHEMERAL
        meta: Json = {
            "id": str(it.id),
            "type": it.type,
            "user": self._user_json(it.user_id),
            "authorizing_integration_owners": it.payload["authorizing_integration_owners"],
        }
        if it.name:
            meta.update(name=it.name, command_type=1)
        if it.clicked_id:
            meta["interacted_message_id"] = str(it.clicked_id)
        if followup and it.original_id:
            meta["original_response_message_id"] = str(it.original_id)
        m.interaction_metadata = meta
        return m

    async def _r_callback(self, req: _Req) -> _Reply:
        it = self._interactions.get(int(req.params["interaction_id"]))
        if it is None or it.token != req.params["token"]:
            raise _ApiError(404, 10062, "Unknown interaction")
        if it.callbacks:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - it.created > self.interaction_deadline_s:
            # Discord's 3 s rule: an interaction not answered in time is gone.
            raise _ApiError(404, 10062, "Unknown interaction")
        body = req.body or {}
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        if kind not in (1, 4, 5, 6, 7, 8, 9) or (kind in (6, 7) and it.type != 3):
            raise _form_error(
                "type", "INTERACTION_RESPONSE_TYPE_INVALID", f"Invalid response type {kind}"
            )
        message: _Msg | None = None
        if kind in (4, 5):
            message = self._interaction_message(it, data, req.files, loading=kind == 5)
            self._store(message)
            it.original_id = message.id
        elif kind in (6, 7) and it.clicked_id is not None:
            it.original_id = it.clicked_id
            if kind == 7:
                message = self._msgs[it.clicked_id]
                self._apply_edit(message, data, req.files)
        it.callbacks.append({"type": kind, "data": data})
        if req.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        inter: Json = {"id": str(it.id), "type": it.type}
        resource: Json = {"type": kind}
        if message is not None:
            inter.update(
                response_message_id=str(message.id),
                response_message_loading=bool(message.flags & _LOADING),
                response_message_ephemeral=bool(message.flags & _EPHEMERAL),
            )
            resource["message"] = self._message_json(message)
        return 200, {"interaction": inter, "resource": resource}

    def _hook(self, req: _Req) -> _Interaction:
        it = self._by_token.get(req.params["token"])
        if (
            it is None
            or int(req.params["webhook_id"]) != self.app_id
            or time.monotonic() - it.created > 900
        ):
            raise _ApiError(404, 10015, "Unknown Webhook")
        return it

    def _hook_message(self, req: _Req) -> _Msg:
        it = self._hook(req)
        ref = req.params["message_id"]
        mid = it.original_id if ref == "@original" else int(ref)
        if mid is None or (mid != it.original_id and mid not in it.followup_ids):
            raise _not_found("Message", 10008)
        m = self._msgs[mid]
        if m.deleted:
            raise _not_found("Message", 10008)
        return m

    async def _r_hook_get(self, req: _Req) -> _Reply:
        return 200, self._message_json(self._hook_message(req))

    async def _r_hook_edit(self, req: _Req) -> _Reply:
        m = self._hook_message(req)
        self._apply_edit(m, req.body or {}, req.files)
        return 200, self._message_json(m)

    async def _r_hook_delete(self, req: _Req) -> _Reply:
        self._delete(self._hook_message(req))
        return 204, None

    async def _r_followup(self, req: _Req) -> _Reply:
        it = self._hook(req)
        if not it.callbacks:
            # Followups need an acknowledged interaction.
            raise _ApiError(404, 10015, "Unknown Webhook")
        body = req.body or {}
        original = self._msgs.get(it.original_id) if it.original_id else None
        if original is not None and original.flags & _LOADING and not original.deleted:
            # Discord's rule: the first followup after a deferral replaces the "thinking" message.
            self._apply_edit(original, body, req.files)
            m = original
        else:
            m = self._interaction_message(it, body, req.files, followup=True)
            self._store(m)
            it.followup_ids.append(m.id)
        if req.query.get("wait") in ("1", "true", "True"):
            return 200, self._message_json(m)
        return 204, None


def _walk_components(components: list[Json]) -> Iterable[Json]:
    for comp in components:
        yield comp
        yield from _walk_components(comp.get("components") or [])
        if isinstance(comp.get("accessory"), dict):
            yield comp["accessory"]
