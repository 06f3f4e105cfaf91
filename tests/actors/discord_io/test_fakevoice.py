"""FakeDiscord's voice server against discord.py's real voice client and discord-ext-voice-recv.

Everything on the wire is real: the TLS voice websocket, IP discovery and RTP over UDP, transport
encryption with PyNaCl, opus with libopus. The client runs on its own thread (``BotThread``).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import aiohttp.connector
import discord
import discord.gateway
import discord.http
import numpy as np
import pytest
import yarl
from discord.ext import voice_recv
from discord.opus import OPUS_SILENCE, Decoder

from tests.support.discord.botthread import TOKEN, BotThread, Recorder
from tests.support.fakediscord import FakeDiscord, point_discord_py_voice

RATE = 48_000
FRAME_BYTES = 960 * 4


def _sine(hz: float, seconds: float = 1.0) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    mono = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return np.repeat(mono, 2).tobytes()


def _peak_hz(pcm: bytes) -> float:
    mono = np.frombuffer(pcm, dtype=np.int16).reshape(-1, 2).mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * RATE / len(mono))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    with FakeDiscord(TOKEN) as fd:
        monkeypatch.setattr(discord.http.Route, "BASE", fd.api_base)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fd.gateway_url)
        )
        # A fresh copy of aiohttp's shared default context takes the certificate, so the trust
        # that point_discord_py_voice adds ends with the test.
        fresh = aiohttp.connector._make_ssl_context(True)
        monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", fresh)
        point_discord_py_voice(fd.voice_ca_file)
        yield fd
        assert fd.errors == []


@pytest.fixture
def bot(fake: FakeDiscord) -> Iterator[BotThread[Recorder]]:
    thread = BotThread(lambda: Recorder(intents=discord.Intents.default())).start()
    thread.wait_ready()
    yield thread
    thread.stop()


def _join(
    bot: BotThread[Recorder], fake: FakeDiscord, channel_id: int
) -> voice_recv.VoiceRecvClient:
    async def join(client: Recorder) -> voice_recv.VoiceRecvClient:
        guild = client.get_guild(fake.guild_id)
        assert guild is not None
        for _ in range(
            200
        ):  # the CHANNEL_CREATE of a channel the test just added may still be on its way
            channel = guild.get_channel(channel_id)
            if channel is not None:
                break
            await asyncio.sleep(0.02)
        assert isinstance(channel, discord.VoiceChannel)
        return await channel.connect(cls=voice_recv.VoiceRecvClient, timeout=10, self_deaf=False)

    vc = bot.call(join, timeout=15)
    fake.wait_until(lambda: (c := fake.voice_connection) is not None and c["ready"])
    return vc


def _leave(bot: BotThread[Recorder], fake: FakeDiscord, vc: voice_recv.VoiceRecvClient) -> None:
    async def leave(client: Recorder) -> None:
        await vc.disconnect()

    bot.call(leave)
    fake.wait_until(lambda: (c := fake.voice_connection) is not None and not c["connected"])
    connection = fake.voice_connection
    assert connection is not None and connection["left"]
    assert not vc.is_connected()
    guild = bot.client.get_guild(fake.guild_id)
    assert guild is not None and guild.me.voice is None


def test_bot_audio_arrives_as_20ms_opus_frames_over_transport_encryption_only(
    fake: FakeDiscord, bot: BotThread[Recorder]
) -> None:
    lounge = fake.add_voice_channel("Lounge")
    vc = _join(bot, fake, lounge)

    connection = fake.voice_connection
    assert connection is not None
    assert connection["mode"] == "aead_xchacha20_poly1305_rtpsize" == vc.mode
    assert connection["version"] == "8"
    assert connection["max_dave_protocol_version"] >= 1  # davey is installed: it offers DAVE
    assert connection["address"] == connection["discovered"]
    assert connection["ssrc"] == vc.ssrc
    # dave_protocol_version 0: no DAVE session, no MLS traffic, plain opus inside the transport.
    assert vc._connection.dave_protocol_version == 0
    assert vc._connection.dave_session is None

    finished = threading.Event()

    async def play(client: Recorder) -> None:
        source = discord.PCMAudio(io.BytesIO(_sine(440)))
        vc.play(source, after=lambda error: finished.set())

    bot.call(play)
    assert finished.wait(5)
    fake.wait_until(lambda: len(fake.voice_received(lounge)) >= 55)

    packets = fake.voice_packets(lounge)
    voice = [p for p in packets if p.opus != OPUS_SILENCE]
    assert len(voice) == 50 and len(packets) == 55  # 1 s of 20 ms frames, then 5 of silence
    assert {p.ssrc for p in packets} == {vc.ssrc}
    assert all(b.timestamp - a.timestamp == 960 for a, b in itertools.pairwise(packets))
    assert all(b.sequence - a.sequence == 1 for a, b in itertools.pairwise(packets))
    decoder = Decoder()  # type: ignore[no-untyped-call]
    assert {len(decoder.decode(p.opus, fec=False)) for p in voice} == {FRAME_BYTES}
    assert abs(_peak_hz(fake.voice_pcm(lounge)) - 440) < 5

    def spoke_then_stopped() -> bool:
        c = fake.voice_connection
        states = [s["speaking"] for s in c["speaking"]] if c is not None else []
        return 1 in states and states[-1] == 0

    fake.wait_until(spoke_then_stopped)
    fake.wait_until(lambda: (c := fake.voice_connection) is not None and c["heartbeats"] >= 1)
    connection = fake.voice_connection
    assert connection is not None
    assert connection["binary_frames"] == 0 and connection["undecryptable"] == 0
    assert connection["last_heartbeat"]["seq_ack"] >= 1  # v8: it acks the numbered messages
    _leave(bot, fake, vc)


def test_each_users_speech_reaches_a_voice_recv_sink_under_their_id(
    fake: FakeDiscord, bot: BotThread[Recorder]
) -> None:
    lounge = fake.add_voice_channel("Lounge")
    alice = fake.add_user("alice")
    bob = fake.add_user("bob")
    fake.set_voice_state(alice, lounge)  # there before the bot: CLIENTS_CONNECT on its arrival
    vc = _join(bot, fake, lounge)
    fake.set_voice_state(bob, lounge)  # joins after: CLIENTS_CONNECT for him alone

    heard: dict[int | None, list[bytes]] = {}

    def write(user: discord.User | discord.Member | None, data: voice_recv.VoiceData) -> None:
        heard.setdefault(user.id if user is not None else None, []).append(data.pcm)

    async def listen(client: Recorder) -> None:
        vc.listen(voice_recv.BasicSink(write))

    bot.call(listen)
    talks = [fake.speak(alice, lounge, _sine(300)), fake.speak(bob, lounge, _sine(700))]
    assert [t.result(5) for t in talks] == [55, 55]
    fake.wait_until(lambda: min(len(heard.get(alice, [])), len(heard.get(bob, []))) >= 54)

    assert set(heard) == {alice, bob}
    assert abs(_peak_hz(b"".join(heard[alice])) - 300) < 5
    assert abs(_peak_hz(b"".join(heard[bob])) - 700) < 5
    connection = fake.voice_connection
    assert connection is not None
    ssrcs = connection["user_ssrcs"]
    assert len({ssrcs[alice], ssrcs[bob], vc.ssrc}) == 3

    assert bot.loop is not None
    left: Any = asyncio.run_coroutine_threadsafe(
        bot.client.wait_for("voice_member_disconnect", timeout=5), bot.loop
    )
    fake.leave_voice(alice)
    _member, ssrc = left.result(6)
    assert ssrc == ssrcs[alice]  # CLIENT_DISCONNECT told voice_recv whose stream ended
    with pytest.raises(ValueError, match="not in voice channel"):
        fake.speak(alice, lounge, _sine(300, 0.1))
    assert fake.speak(bob, lounge, _sine(700, 0.2), fast=True).result(5) == 15
    _leave(bot, fake, vc)
    with pytest.raises(RuntimeError, match="no ready voice connection"):
        fake.speak(bob, lounge, _sine(700, 0.1))


def test_voice_gateway_refuses_an_identify_without_the_issued_token(fake: FakeDiscord) -> None:
    async def attempt() -> tuple[Any, int | None]:
        trust = ssl.create_default_context(cafile=fake.voice_ca_file)
        async with aiohttp.ClientSession() as session:
            url = f"wss://{fake.voice_endpoint}/?v=8"
            async with session.ws_connect(url, ssl=trust) as ws:
                hello = await ws.receive_json()
                identify = {
                    "server_id": str(fake.guild_id),
                    "user_id": str(fake.bot_id),
                    "session_id": "nope",
                    "token": "nope",
                }
                await ws.send_json({"op": 0, "d": identify})
                await ws.receive()
            # aiohttp's graceful shutdown: a TLS transport needs a moment to close before the
            # loop ends, or it is reported unclosed.
            await asyncio.sleep(0.25)
            return hello, ws.close_code

    hello, code = asyncio.run(attempt())
    assert hello["op"] == 8 and hello["d"]["heartbeat_interval"] > 0
    assert code == 4004
