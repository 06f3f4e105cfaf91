"""The fake Discord's voice server: a TLS voice gateway (v8, with ``seq``), IP discovery and RTP
over UDP sealed with ``aead_xchacha20_poly1305_rtpsize``, opus both ways.

Op 4 on the main gateway is answered with VOICE_SERVER_UPDATE naming the voice gateway on
loopback, whose READY points at the UDP port. discord.py always dials ``wss://{endpoint}``, so
the voice gateway serves TLS with a throwaway self-signed certificate (made with the ``openssl``
CLI); :func:`point_discord_py_voice` makes a process trust it. SESSION_DESCRIPTION says
``dave_protocol_version: 0``, Discord's answer when a call is not end-to-end encrypted, so only
transport encryption applies.

:class:`VoiceServer` is one cohesive class over 500 lines: the voice gateway's protocol and the UDP
side share one voice session per bot connection, and read best in one place.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import secrets
import ssl
import struct
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.support.fakediscord.gateway import Gateway, Session
from tests.support.fakediscord.rtp import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    OPUS_SILENCE,
    SILENCE_TAIL,
    VOICE_MODES,
    XCHACHA,
    RtpRecord,
    make_certificate,
    open_rtp,
    seal_rtp,
)
from tests.support.fakediscord.wire import Conn, Intent, Json, Records
from tests.support.fakediscord.world import World

_log = logging.getLogger(__name__)


@dataclass
class VoiceSession:
    """The bot's connection to the voice gateway, from IDENTIFY until it leaves the channel."""

    token: str
    session_id: str
    channel_id: int
    ssrc: int
    conn: Conn
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
class UserRtpStream:
    """A user's outgoing RTP stream: one SSRC, sequence and timestamp running on across talks."""

    ssrc: int
    sequence: int
    timestamp: int


class VoiceServer:
    """The bot's voice connection as Discord's voice servers see it, and users who talk to it."""

    def __init__(
        self, world: World, gateway: Gateway, records: Records, *, heartbeat_interval_ms: int
    ) -> None:
        self.world = world
        self.gateway = gateway
        self.records = records
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.token: str | None = None  # the voice token the latest VOICE_SERVER_UPDATE gave
        self.bot: VoiceSession | None = None
        self.conns: set[Conn] = set()
        self.audio: dict[int, list[RtpRecord]] = {}  # channel id → what the bot sent there
        self.streams: dict[int, UserRtpStream] = {}  # user id → their outgoing stream
        self.next_ssrc = 100 + secrets.randbelow(1000)
        self.udp: asyncio.DatagramTransport | None = None
        self.udp_port = 0
        self.port = 0  # the voice gateway's
        self.cert_dir: str | None = None
        self.cert_file: str | None = None
        self.unavailable: str | None = None  # why voice cannot be served here
        self.speakers: set[asyncio.Task[int]] = set()

    async def serve(self) -> web.AppRunner | None:
        """The voice gateway (TLS websocket) and the UDP media port, both on 127.0.0.1."""
        loop = asyncio.get_running_loop()
        server = self

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                try:
                    server.on_udp(data, (str(addr[0]), int(addr[1])))
                except Exception:
                    server.records.error()

        transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
        self.udp = transport
        self.udp_port = transport.get_extra_info("sockname")[1]
        self.cert_dir = tempfile.mkdtemp(prefix="fakediscord-voice-")
        try:
            cert, key = await loop.run_in_executor(None, make_certificate, self.cert_dir)
        except (OSError, subprocess.SubprocessError) as exc:
            self.unavailable = (
                f"the fake voice gateway needs the openssl CLI for its TLS certificate ({exc})"
            )
            _log.warning("fakediscord: voice disabled: %s", self.unavailable)
            return None
        self.cert_file = cert
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_get("/", self.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    def available(self) -> None:
        if self.udp is None:
            raise RuntimeError("FakeDiscord is not started")
        if self.unavailable is not None:
            raise RuntimeError(self.unavailable)

    async def bot_request(self, session: Session, d: Json) -> None:
        """Op 4 from the bot: its voice state, then a voice server when it needs a new one."""
        cid = int(d["channel_id"]) if d.get("channel_id") else None
        before = self.world.voice_states.get(self.world.bot_id)
        was = int(before["channel_id"]) if before is not None else None
        extra = {"self_mute": bool(d.get("self_mute")), "self_deaf": bool(d.get("self_deaf"))}
        self.set_state(self.world.bot_id, cid, extra, session_id=session.id)
        vs = self.bot
        if cid is None:
            self.token = None
            if vs is not None and not vs.left:
                vs.left = True
                if vs.open:
                    # Discord's 4014: disconnected from the channel, do not reconnect.
                    await vs.conn.close(4014, b"Disconnected.")
            return
        if cid == was and vs is not None and vs.open and not vs.left and vs.channel_id == cid:
            return  # a mute or deafen change: same channel, same voice server
        self.token = secrets.token_hex(8)
        endpoint = None if self.unavailable else f"127.0.0.1:{self.port}"
        if endpoint is None:
            _log.warning("fakediscord: no voice endpoint to give: %s", self.unavailable)
        self.gateway.send_dispatch(
            session,
            "VOICE_SERVER_UPDATE",
            {"token": self.token, "guild_id": str(self.world.guild_id), "endpoint": endpoint},
        )
        if vs is not None and vs.open and vs.channel_id != cid:
            # A move: Discord drops the old voice socket with 4014, and discord.py's voice poller
            # answers that by dialling the new server (it does not on VOICE_SERVER_UPDATE alone).
            await vs.conn.close(4014, b"Disconnected.")

    def set_state(
        self, uid: int, cid: int | None, extra: Json, session_id: str | None = None
    ) -> None:
        self.world.user(uid)
        if cid is not None and self.world.channel(cid).kind != "voice":
            raise ValueError(f"channel {cid} is not a voice channel")
        state: Json = {
            "guild_id": str(self.world.guild_id),
            "channel_id": None if cid is None else str(cid),
            "user_id": str(uid),
            "member": self.world.member_json(uid),
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
        before = self.world.voice_states.get(uid)
        was = int(before["channel_id"]) if before is not None else None
        if cid is None:
            self.world.voice_states.pop(uid, None)
        else:
            self.world.voice_states[uid] = state
        if uid != self.world.bot_id and was != cid:
            self.member_moved(uid, was, cid)
        mine = uid == self.world.bot_id
        self.world.dispatch(
            "VOICE_STATE_UPDATE",
            lambda intents: state if mine or intents & Intent.GUILD_VOICE_STATES else None,
        )

    def member_moved(self, uid: int, was: int | None, cid: int | None) -> None:
        # A user's SSRC belongs to one voice connection; a new channel means a new one.
        self.streams.pop(uid, None)
        vs = self.bot
        if vs is None or not vs.open or vs.left or vs.key is None:
            return  # the SESSION_DESCRIPTION's CLIENTS_CONNECT lists whoever is there by then
        if cid == vs.channel_id:
            self.send(vs, 11, {"user_ids": [str(uid)]})
        elif was == vs.channel_id:
            self.send(vs, 13, {"user_id": str(uid)})

    def new_ssrc(self) -> int:
        self.next_ssrc += 1 + secrets.randbelow(16)
        return self.next_ssrc

    def send(self, vs: VoiceSession, op: int, d: Json) -> None:
        # Voice gateway v8 numbers the server's messages; heartbeats carry the last as seq_ack.
        vs.seq += 1
        vs.conn.send({"op": op, "d": d, "seq": vs.seq})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = Conn(ws)
        self.conns.add(conn)
        writer = asyncio.create_task(conn.write_all())
        conn.send({"op": 8, "d": {"v": 8, "heartbeat_interval": float(self.heartbeat_interval_ms)}})
        version = request.query.get("v", "")
        vs: VoiceSession | None = None
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    if vs is not None:
                        vs.binary_frames += 1
                    continue
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    vs = await self.on_frame(conn, vs, json.loads(msg.data), version)
                except Exception:
                    self.records.error()
        finally:
            self.conns.discard(conn)
            if vs is not None and vs.conn is conn:
                vs.open = False
                vs.close_code = ws.close_code
            conn.queue.put_nowait(None)
            await writer
        return ws

    async def on_frame(
        self, conn: Conn, vs: VoiceSession | None, frame: Json, version: str
    ) -> VoiceSession | None:
        op, d = frame.get("op"), frame.get("d")
        if op == 3:
            if vs is not None:
                vs.heartbeats += 1
                vs.last_heartbeat = d
            conn.send({"op": 6, "d": {"t": d.get("t")} if isinstance(d, dict) else d})
            return vs
        if op in (0, 7) and vs is not None:
            await conn.close(4005, b"Already authenticated.")
            return vs
        if op == 0:
            return await self.identify(conn, d or {}, version)
        if op == 7:
            return await self.resume(conn, d or {})
        if vs is None:
            await conn.close(4003, b"Not authenticated.")
            return None
        if op == 1:
            await self.select_protocol(vs, d or {})
        elif op == 5:
            vs.speaking.append(d or {})
        elif op in (12, 23, 31):
            # Client connect with its audio SSRC, and DAVE acknowledgements: noted, no reply.
            vs.other_ops.append({"op": op, "d": d})
        else:
            await conn.close(4001, b"Unknown opcode.")
        return vs

    async def identify(self, conn: Conn, d: Json, version: str) -> VoiceSession | None:
        state = self.world.voice_states.get(self.world.bot_id)
        if (
            self.token is None
            or d.get("token") != self.token
            or str(d.get("server_id")) != str(self.world.guild_id)
            or str(d.get("user_id")) != str(self.world.bot_id)
            or state is None
            or state["channel_id"] is None
            or d.get("session_id") != state["session_id"]
        ):
            await conn.close(4004, b"Authentication failed.")
            return None
        old = self.bot
        if old is not None and old.open and old.conn is not conn:
            await old.conn.close(4014, b"Disconnected.")
        vs = VoiceSession(
            token=self.token,
            session_id=str(state["session_id"]),
            channel_id=int(state["channel_id"]),
            ssrc=self.new_ssrc(),
            conn=conn,
            identify={k: v for k, v in d.items() if k != "token"},
            version=version,
        )
        self.bot = vs
        ready = {
            "ssrc": vs.ssrc,
            "ip": "127.0.0.1",
            "port": self.udp_port,
            "modes": list(VOICE_MODES),
            "experiments": [],
        }
        self.send(vs, 2, ready)
        return vs

    async def resume(self, conn: Conn, d: Json) -> VoiceSession | None:
        vs = self.bot
        if (
            vs is None
            or vs.left
            or d.get("token") != vs.token
            or d.get("session_id") != vs.session_id
            or str(d.get("server_id")) != str(self.world.guild_id)
        ):
            await conn.close(4006, b"Session is no longer valid.")
            return None
        if vs.open and vs.conn is not conn:
            await vs.conn.close(4014, b"Disconnected.")
        vs.conn, vs.open, vs.close_code = conn, True, None
        vs.resumes += 1
        conn.send({"op": 9, "d": None})
        return vs

    async def select_protocol(self, vs: VoiceSession, d: Json) -> None:
        data = d.get("data") or {}
        if d.get("protocol") != "udp":
            await vs.conn.close(4012, b"Unknown protocol.")
            return
        mode = data.get("mode")
        if mode not in VOICE_MODES:
            await vs.conn.close(4016, b"Unknown encryption mode.")
            return
        if mode != XCHACHA:
            # Offered as Discord does, but PyNaCl has no AES-GCM: a limit of this fake.
            self.records.errors.append(f"fakediscord cannot serve voice mode {mode!r}")
            await vs.conn.close(4016, b"Unknown encryption mode.")
            return
        vs.mode = mode
        vs.address = (str(data["address"]), int(data["port"]))
        vs.key = secrets.token_bytes(32)
        self.send(
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
            for uid, st in self.world.voice_states.items()
            if uid != self.world.bot_id and st["channel_id"] == str(vs.channel_id)
        ]
        if others:
            self.send(vs, 11, {"user_ids": others})

    def on_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        from nacl.exceptions import CryptoError

        assert self.udp is not None
        vs = self.bot
        if len(data) == 74 and data[:4] == b"\x00\x01\x00\x46":
            (ssrc,) = struct.unpack_from(">I", data, 4)
            if vs is None or vs.ssrc != ssrc:
                return
            vs.discovered = addr
            self.udp.sendto(struct.pack(">HHI64sH", 2, 70, ssrc, addr[0].encode(), addr[1]), addr)
        elif len(data) >= 12 and data[0] >> 6 == 2 and not 200 <= data[1] <= 204:
            sequence, timestamp, ssrc = struct.unpack_from(">HII", data, 2)
            if vs is None or vs.ssrc != ssrc or vs.key is None:
                return
            try:
                opus = open_rtp(data, vs.key)
            except (CryptoError, ValueError, struct.error):
                vs.undecryptable += 1
                return
            vs.packets += 1
            record = RtpRecord(time.monotonic(), ssrc, sequence, timestamp, opus)
            self.audio.setdefault(vs.channel_id, []).append(record)
        elif len(data) == 8 and vs is not None and addr in (vs.address, vs.discovered):
            vs.keepalives += 1  # discord-ext-voice-recv's UDP keepalive; Discord does not echo it

    def start_speaking(
        self, uid: int, cid: int, pcm: bytes, fast: bool
    ) -> concurrent.futures.Future[int]:
        self.available()
        self.world.user(uid)
        if self.world.channel(cid).kind != "voice":
            raise ValueError(f"channel {cid} is not a voice channel")
        state = self.world.voice_states.get(uid)
        if state is None or state["channel_id"] != str(cid):
            raise ValueError(f"user {uid} is not in voice channel {cid}: set_voice_state first")
        vs = self.bot
        if vs is None or not vs.open or vs.left or vs.channel_id != cid or vs.key is None:
            raise RuntimeError(
                f"the bot has no ready voice connection in channel {cid} to hear user {uid} "
                "(wait for voice_connection['ready'])"
            )
        stream = self.streams.get(uid)
        if stream is None:
            stream = UserRtpStream(
                self.new_ssrc(), secrets.randbelow(1 << 15), secrets.randbelow(1 << 31)
            )
            self.streams[uid] = stream
        result: concurrent.futures.Future[int] = concurrent.futures.Future()
        task = asyncio.get_running_loop().create_task(self.speak(uid, cid, pcm, fast, vs, stream))

        def done(t: asyncio.Task[int]) -> None:
            self.speakers.discard(t)
            if t.cancelled():
                result.cancel()
            elif (exc := t.exception()) is not None:
                self.records.errors.append("".join(traceback.format_exception(exc)))
                result.set_exception(exc)
            else:
                result.set_result(t.result())

        self.speakers.add(task)
        task.add_done_callback(done)
        return result

    async def speak(
        self, uid: int, cid: int, pcm: bytes, fast: bool, vs: VoiceSession, stream: UserRtpStream
    ) -> int:
        from discord.opus import Encoder

        assert self.udp is not None
        encoder = Encoder(application="voip")
        self.send(vs, 5, {"user_id": str(uid), "ssrc": stream.ssrc, "speaking": 1})
        loop = asyncio.get_running_loop()
        frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
        start = loop.time() + 0.02  # SPEAKING leads the audio by a frame, as it does on Discord
        sent = 0
        for i in range(len(frames) + SILENCE_TAIL):
            if fast:
                await asyncio.sleep(0.02 if i == 0 else 0)
            else:
                await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))
            state = self.world.voice_states.get(uid)
            if (
                self.bot is not vs
                or not vs.open
                or vs.left
                or vs.key is None
                or vs.address is None
                or state is None
                or state["channel_id"] != str(cid)
            ):
                break
            if i < len(frames):
                opus = encoder.encode(frames[i].ljust(FRAME_BYTES, b"\0"), FRAME_SAMPLES)
            else:
                opus = OPUS_SILENCE
            packet = seal_rtp(
                stream.ssrc, stream.sequence, stream.timestamp, opus, vs.key, vs.nonce
            )
            vs.nonce = (vs.nonce + 1) & 0xFFFFFFFF
            stream.sequence = (stream.sequence + 1) & 0xFFFF
            stream.timestamp = (stream.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
            self.udp.sendto(packet, vs.address)
            sent += 1
        return sent

    def connection_view(self) -> Json | None:
        vs = self.bot
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
            "user_ssrcs": {uid: st.ssrc for uid, st in self.streams.items()},
        }
