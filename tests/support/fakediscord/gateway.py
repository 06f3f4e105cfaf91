"""The fake Discord's main gateway: HELLO, IDENTIFY (READY, GUILD_CREATE), heartbeats, RESUME with
replay, INVALID_SESSION, member chunks, presence and voice state requests, and the dispatch of
events to each session by its intents.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.support.fakediscord.wire import (
    GATEWAY_PATH,
    Conn,
    Intent,
    Json,
    Records,
    RequestRecord,
)
from tests.support.fakediscord.world import World


@dataclass
class Session:
    id: str
    intents: int
    seq: int = 0
    conn: Conn | None = None
    buffer: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=5000))


class Gateway:
    """Sessions and their sockets; ``on_voice_request`` gets the bot's op 4 for the guild."""

    def __init__(
        self, world: World, records: Records, *, token: str, heartbeat_interval_ms: int
    ) -> None:
        self.world = world
        self.records = records
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.on_voice_request: Callable[[Session, Json], Awaitable[None]] | None = None
        self.sessions: dict[str, Session] = {}
        self.conns: set[Conn] = set()
        self.online = True
        self.last_intents: int | None = None
        self.presence: Json | None = None
        self.voice_requests: list[Json] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.world.port}{GATEWAY_PATH}"

    def dispatch(self, event: str, build: Callable[[int], Json | None]) -> None:
        """Send an event to every session that should see it; offline, nobody does."""
        if not self.online:
            return
        for session in list(self.sessions.values()):
            data = build(session.intents)
            if data is not None:
                self.send_dispatch(session, event, data)

    def send_dispatch(self, session: Session, event: str, data: Json) -> None:
        # Buffered whether or not a socket is attached, so RESUME can replay it.
        session.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
        session.buffer.append((session.seq, frame))
        if session.conn is not None:
            session.conn.send(frame)

    async def set_online(self, online: bool) -> None:
        self.online = online
        if not online:
            for conn in list(self.conns):
                await self.close_conn(conn, 1001)

    def go_online(self) -> None:
        self.online = True

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.online:
            self.records.requests.append(
                RequestRecord(time.monotonic(), "GET", GATEWAY_PATH, None, 503)
            )
            return web.Response(
                status=503, text="Service Unavailable", headers={"Via": "1.1 google"}
            )
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.records.requests.append(
            RequestRecord(time.monotonic(), "GET", GATEWAY_PATH, None, 101)
        )
        conn = Conn(ws)
        self.conns.add(conn)
        writer = asyncio.create_task(conn.write_all())
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
                    await self.on_frame(conn, json.loads(msg.data))
                except Exception:
                    self.records.error()
        finally:
            self.conns.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            conn.queue.put_nowait(None)
            await writer
        return ws

    async def close_conn(self, conn: Conn, code: int, reason: bytes = b"") -> None:
        self.conns.discard(conn)
        await conn.close(code, reason)

    async def drop(self, code: int, *, resumable: bool) -> None:
        """Close every live socket; without ``resumable`` the sessions are forgotten first."""
        if not resumable:
            self.sessions.clear()
        for conn in list(self.conns):
            await self.close_conn(conn, code)

    async def on_frame(self, conn: Conn, frame: Json) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            self.records.counts["heartbeat"] += 1
            conn.send({"op": 11, "s": None, "t": None, "d": None})
        elif op == 2:
            await self.identify(conn, d or {})
        elif op == 6:
            await self.resume(conn, d or {})
        elif conn.session is None:
            await self.close_conn(conn, 4003, b"Not authenticated.")
        elif op == 3:
            self.presence = d
        elif op == 4:
            self.voice_requests.append(d or {})
            if (
                d
                and str(d.get("guild_id")) == str(self.world.guild_id)
                and self.on_voice_request is not None
            ):
                await self.on_voice_request(conn.session, d)
        elif op == 8:
            self.members_chunk(conn.session, d or {})
        else:
            await self.close_conn(conn, 4001, b"Unknown opcode.")

    async def identify(self, conn: Conn, d: Json) -> None:
        if conn.session is not None:
            await self.close_conn(conn, 4005, b"Already authenticated.")
            return
        if d.get("token") != self.token:
            await self.close_conn(conn, 4004, b"Authentication failed.")
            return
        intents = d.get("intents")
        if not isinstance(intents, int):
            await self.close_conn(conn, 4013, b"Invalid intent(s).")
            return
        if intents & Intent.PRIVILEGED & ~self.world.approved_intents:
            await self.close_conn(conn, 4014, b"Disallowed intent(s).")
            return
        self.records.counts["identify"] += 1
        self.last_intents = intents
        # A fresh IDENTIFY means the client gave up on its detached sessions.
        for sid in [sid for sid, s in self.sessions.items() if s.conn is None]:
            del self.sessions[sid]
        session = Session(secrets.token_hex(16), intents, conn=conn)
        self.sessions[session.id] = session
        conn.session = session
        me = {
            **self.world.user_json(self.world.bot_id),
            "verified": True,
            "mfa_enabled": False,
            "email": None,
        }
        ready: Json = {
            "v": 10,
            "user": me,
            "guilds": [{"id": str(self.world.guild_id), "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.url,
            "application": {"id": str(self.world.app_id), "flags": self.world.app_flags()},
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
        self.send_dispatch(session, "READY", ready)
        self.send_dispatch(session, "GUILD_CREATE", self.world.guild_json())

    async def resume(self, conn: Conn, d: Json) -> None:
        if d.get("token") != self.token:
            await self.close_conn(conn, 4004, b"Authentication failed.")
            return
        session = self.sessions.get(str(d.get("session_id")))
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
        self.records.counts["resume"] += 1
        self.send_dispatch(session, "RESUMED", {"_trace": ["fakediscord"]})

    def members_chunk(self, session: Session, d: Json) -> None:
        query = str(d.get("query") or "").lower()
        wanted = d.get("user_ids")
        if wanted is not None:
            wanted = {str(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
        uids = [
            u
            for u in self.world.users
            if (wanted is None or str(u) in wanted)
            and self.world.users[u].name.lower().startswith(query)
        ]
        if d.get("limit"):
            uids = uids[: int(d["limit"])]
        self.send_dispatch(
            session,
            "GUILD_MEMBERS_CHUNK",
            {
                "guild_id": str(self.world.guild_id),
                "members": [self.world.member_json(u) for u in uids],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
                "nonce": d.get("nonce"),
            },
        )
