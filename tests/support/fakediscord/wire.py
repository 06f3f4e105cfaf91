"""What every part of the fake Discord shares: ids, intents, permissions, API errors, records of
what was asked, and one websocket connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiohttp import web

_log = logging.getLogger("tests.support.fakediscord")

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
EVERYONE_PERMS = sum(1 << b for b in (0, 6, 9, 10, 11, 14, 15, 16, 18, 20, 21, 25, 26, 31, 38))
BOT_PERMS = EVERYONE_PERMS | (1 << 13)
EPHEMERAL = 1 << 6
LOADING = 1 << 7
MAX_CONTENT = 2000


class RequestRecord(NamedTuple):
    """One HTTP request the server answered; ``path`` is relative to the API base.

    Gateway upgrades are logged too, as ``GET /gateway-ws`` with 101 (accepted) or 503 (offline).
    """

    t: float
    method: str
    path: str
    body: Any
    status: int


class Records:
    """What the server was asked and counted, and its own errors, for tests to inspect."""

    def __init__(self) -> None:
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []  # tracebacks of exceptions inside the server (its bugs)
        self.counts = {"identify": 0, "resume": 0, "heartbeat": 0, "rate_limited": 0}

    def error(self) -> None:
        """Record the exception being handled."""
        tb = traceback.format_exc()
        self.errors.append(tb)
        _log.error("fakediscord internal error:\n%s", tb)


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


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def fixed_snowflake(day: str, n: int) -> int:
    ms = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
    return ((ms - DISCORD_EPOCH_MS) << 22) | n


class Snowflakes:
    """Real snowflakes from the wall clock, strictly increasing, so ``after=`` ordering holds."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        sid = max(ms << 22, self._last + 1)
        self._last = sid
        return sid


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {"message": message, "code": code, **extra}


def not_found(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


def form_error(name: str = "", code: str = "", message: str = "") -> ApiError:
    """Discord's 50035 answer, naming the offending field when there is one."""
    errors = {name: {"_errors": [{"code": code, "message": message}]}} if name else {}
    return ApiError(400, 50035, "Invalid Form Body", errors=errors)


@dataclass
class Req:
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    files: list[tuple[str, bytes]]


Reply = tuple[int, Any]  # status, JSON body
Handler = Callable[[Req], Awaitable[Reply]]


class Conn:
    """One websocket (main or voice gateway); a single writer task keeps frames in order."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.session: Any = None  # the main gateway's Session, once identified or resumed

    def send(self, payload: Json | str) -> None:
        self.queue.put_nowait(payload if isinstance(payload, str) else json.dumps(payload))

    async def write_all(self) -> None:
        """Send queued frames until ``None`` is queued or the socket closes."""
        while (frame := await self.queue.get()) is not None:
            if self.ws.closed:
                break
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                break

    async def close(self, code: int, reason: bytes = b"") -> None:
        if self.session is not None and self.session.conn is self:
            self.session.conn = None
        self.session = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=reason), 5)
