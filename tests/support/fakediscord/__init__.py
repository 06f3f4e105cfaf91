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

The package's parts: ``world`` (guild, users, channels, messages and their JSON), ``gateway``,
``rest``, ``interactions`` (application commands and interactions), ``voice`` (the voice server)
and ``rtp`` (its media), ``wire`` (what they share), and ``server`` (:class:`FakeDiscord`, the
object tests use).

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

from tests.support.fakediscord.rtp import RtpRecord, point_discord_py_voice
from tests.support.fakediscord.server import FakeDiscord
from tests.support.fakediscord.wire import Intent, RequestRecord, point_discord_py

__all__ = [
    "FakeDiscord",
    "Intent",
    "RequestRecord",
    "RtpRecord",
    "point_discord_py",
    "point_discord_py_voice",
]
