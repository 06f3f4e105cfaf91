"""The Discord voice bridge's hearing side: UserAudioSink against real discord.py and voice-recv.

Only the DAVE session is ever a stand-in: a keyed one needs the MLS handshake with Discord's voice
gateway (external sender, proposals, commit), which no test here can reach.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest

from hexbus.pcm import from_pcm16, to_pcm16
from tests.support.voice_bridge import FRAME, Samples, dominant_hz, rms, sine

voice = pytest.importorskip("actors.discord_io.voice", reason="pip install 'hex[discord]'")

import davey  # noqa: E402  (after voice: it imports discord.py with audioop's warning silenced)
import discord  # noqa: E402
from discord.ext import voice_recv  # noqa: E402
from discord.opus import Encoder  # noqa: E402

from actors.discord_io.voice import FRAME_BYTES, UserAudioSink  # noqa: E402

if TYPE_CHECKING:
    from discord.types.channel import VoiceChannel as VoiceChannelPayload
    from discord.types.guild import Guild as GuildPayload

ALICE, BOB, CAROL = 111, 222, 333
SSRC = {ALICE: 5001, BOB: 5002, CAROL: 5003}


def band_energy(samples: Samples, rate: int, hz: float, width: float = 30.0) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    return float(spectrum[np.abs(freqs - hz) < width].sum())


# -- hearing: UserAudioSink -----------------------------------------------------------------------


def opus_packets(freq: float, seconds: float) -> list[bytes]:
    """A mono sine as Discord sends it: 20 ms opus packets of 48 kHz stereo."""
    stereo = to_pcm16(np.repeat(sine(freq, 48000, seconds, amp=0.4), 2))
    encoder = Encoder()
    return [
        encoder.encode(stereo[i : i + FRAME_BYTES], FRAME)
        for i in range(0, len(stereo), FRAME_BYTES)
    ]


def rtp(ssrc: int, seq: int, payload: bytes) -> Any:
    """A received packet as voice-recv's reader leaves it: parsed RTP, transport layer removed."""
    header = struct.pack(">BBHII", 0x80, 0x78, seq, seq * FRAME, ssrc)
    packet = voice_recv.rtp.decode_rtp(header + b"\0" * 16)  # the transport-encrypted body
    packet.decrypted_data = payload
    return packet


class Heard:
    """What the sink delivered, and on which thread."""

    def __init__(self) -> None:
        self.pcm: dict[int, bytearray] = defaultdict(bytearray)
        self.names: dict[int, set[str]] = defaultdict(set)
        self.left: list[bool] = []  # for each end: they left (else they stopped sending)
        self.rates: set[int] = set()
        self.ended: list[tuple[int, str]] = []
        self.threads: set[int] = set()

    def audio(self, user_id: int, name: str, pcm16: bytes, rate: int) -> None:
        self.threads.add(threading.get_ident())
        self.pcm[user_id] += pcm16
        self.names[user_id].add(name)
        self.rates.add(rate)

    def end(self, user_id: int, name: str, left: bool) -> None:
        self.threads.add(threading.get_ident())
        self.ended.append((user_id, name))
        self.left.append(left)

    def samples(self, user_id: int) -> Samples:
        return from_pcm16(bytes(self.pcm[user_id]))


def on_router_thread(work: Callable[[], None]) -> None:
    """Run sink calls on a thread of their own, as voice-recv's packet router does."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # surfaced in the test below, not lost in the thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="packet-router-test")
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and not failure, failure


def drive(work: Callable[[asyncio.AbstractEventLoop], None]) -> None:
    """Run ``work`` on a router thread while a loop runs here to take the sink's callbacks."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # The sink's callbacks were queued on this loop before to_thread's result, so they have
        # all run, in order, when it returns.
        await asyncio.to_thread(on_router_thread, lambda: work(loop))

    asyncio.run(main())


@pytest.fixture
def client() -> discord.Client:
    return discord.Client(intents=discord.Intents(guilds=True, voice_states=True))


@pytest.fixture
def voice_client(client: discord.Client) -> Iterator[voice_recv.VoiceRecvClient]:
    """A real, unconnected VoiceRecvClient: its SSRC map and DAVE state are what the sink reads."""
    state = client._connection
    # Partial gateway payloads: only the fields these objects read (discord.py's types list all).
    guild = discord.Guild(data=cast("GuildPayload", {"id": "10", "name": "hexhouse"}), state=state)
    channel = discord.VoiceChannel(
        state=state,
        guild=guild,
        data=cast(
            "VoiceChannelPayload",
            {
                "id": "20",
                "name": "lounge",
                "type": 2,
                "position": 0,
                "guild_id": "10",
                "bitrate": 64000,
                "user_limit": 0,
            },
        ),
    )
    vc = voice_recv.VoiceRecvClient(client, channel)
    yield vc
    vc._connection._socket_reader.stop()


def member(client: discord.Client, user_id: int, name: str) -> discord.User:
    return client._connection.store_user(
        {
            "id": str(user_id),
            "username": name.lower(),
            "discriminator": "0",
            "global_name": name,
            "avatar": None,
        }
    )


def attach(sink: UserAudioSink, vc: voice_recv.VoiceRecvClient | None) -> None:
    sink._voice_client = vc  # what voice-recv's AudioReader does when vc.listen(sink) starts


def test_each_member_is_heard_apart_as_16k_mono_on_the_loop(client: discord.Client) -> None:
    heard = Heard()
    alice, bob = member(client, ALICE, "Alice"), member(client, BOB, "Bob")
    streams = {ALICE: opus_packets(300, 1.0), BOB: opus_packets(700, 1.0)}
    sink: UserAudioSink

    def route(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal sink
        sink = UserAudioSink(heard.audio, loop, on_end=heard.end)
        attach(sink, None)
        for seq, (a, b) in enumerate(zip(streams[ALICE], streams[BOB], strict=True)):
            sink.write(alice, voice_recv.VoiceData(rtp(SSRC[ALICE], seq, a), alice))
            sink.write(bob, voice_recv.VoiceData(rtp(SSRC[BOB], seq, b), bob))
        sink.on_voice_member_speaking_stop(alice)
        sink.on_voice_member_speaking_stop(bob)

    drive(route)

    assert heard.threads == {threading.get_ident()} and heard.rates == {16000}
    assert heard.names == {ALICE: {"Alice"}, BOB: {"Bob"}}
    assert heard.ended == [(ALICE, "Alice"), (BOB, "Bob")] and heard.left == [False, False]
    for user, hz, other in ((ALICE, 300, 700), (BOB, 700, 300)):
        got = heard.samples(user)
        assert got.size == 16000  # 50 x 20 ms, the resampler's tail flushed at speaking stop
        assert dominant_hz(got[1600:], 16000) == pytest.approx(hz, abs=10)
        assert band_energy(got, 16000, other) < 0.001 * band_energy(got, 16000, hz)  # never mixed
        assert rms(got[1600:]) == pytest.approx(0.4 / np.sqrt(2), rel=0.15)
    assert sink.passthrough == 100 and sink.dave_decrypted == 0 and sink.decode_errors == 0


def test_a_lost_packet_is_concealed_and_a_corrupt_one_counted_never_raised(
    client: discord.Client,
) -> None:
    heard = Heard()
    alice = member(client, ALICE, "Alice")
    packets = opus_packets(300, 0.2)
    sink: UserAudioSink

    def route(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal sink
        sink = UserAudioSink(heard.audio, loop)
        attach(sink, None)
        lost = voice_recv.rtp.FakePacket(SSRC[ALICE], 99, 99 * FRAME)  # the jitter buffer's gap
        sink.write(alice, voice_recv.VoiceData(lost, alice))  # before any audio: nothing to conceal
        for seq, packet in enumerate(packets):
            sink.write(alice, voice_recv.VoiceData(rtp(SSRC[ALICE], seq, packet), alice))
            if seq == 4:
                sink.write(alice, voice_recv.VoiceData(lost, alice))
                sink.write(alice, voice_recv.VoiceData(rtp(SSRC[ALICE], seq, b"\xff"), alice))
                sink.write(
                    alice,
                    voice_recv.VoiceData(rtp(SSRC[ALICE], seq, b"\x03\x04\x05\x06" * 9), alice),
                )
        sink.on_voice_member_speaking_stop(alice)

    drive(route)

    assert sink.decode_errors == 2 and sink.write_errors == 0
    assert heard.samples(ALICE).size == (len(packets) + 1) * 320  # the concealed 20 ms included
    assert dominant_hz(heard.samples(ALICE), 16000) == pytest.approx(300, abs=10)


def test_audio_of_an_unknown_speaker_is_dropped_and_counted(
    client: discord.Client, voice_client: voice_recv.VoiceRecvClient
) -> None:
    heard = Heard()
    packet = opus_packets(300, 0.02)[0]
    sink: UserAudioSink

    def route(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal sink
        sink = UserAudioSink(heard.audio, loop, out_rate=48000)
        attach(sink, None)
        sink.write(None, voice_recv.VoiceData(rtp(SSRC[ALICE], 0, packet), None))
        attach(sink, voice_client)  # the SSRC is not mapped to anyone yet either
        sink.write(None, voice_recv.VoiceData(rtp(SSRC[ALICE], 1, packet), None))

    drive(route)

    assert sink.unknown_dropped == 2 and not heard.pcm and sink.users == frozenset()


def test_a_speaker_missing_from_the_member_cache_is_found_by_ssrc(
    voice_client: voice_recv.VoiceRecvClient,
) -> None:
    heard = Heard()
    voice_client._add_ssrc(
        CAROL, SSRC[CAROL]
    )  # the voice gateway's SPEAKING op, via voice-recv's hook
    packet = opus_packets(300, 0.02)[0]

    def route(loop: asyncio.AbstractEventLoop) -> None:
        sink = UserAudioSink(heard.audio, loop, out_rate=48000)
        attach(sink, voice_client)
        sink.write(None, voice_recv.VoiceData(rtp(SSRC[CAROL], 0, packet), None))

    drive(route)

    assert heard.names == {CAROL: {str(CAROL)}} and len(heard.pcm[CAROL]) == FRAME * 2  # 48k mono


class KeyedSession:
    """Stands in for a ready davey.DaveSession: frames "encrypted" for a member are
    b"E2EE" + their id + opus; anything else is unencrypted. It fails the way davey does."""

    ready = True

    def __init__(self, members: set[int]) -> None:
        self.members = members
        self.calls: list[tuple[int, davey.MediaType]] = []

    @staticmethod
    def seal(user_id: int, opus: bytes) -> bytes:
        return b"E2EE" + user_id.to_bytes(8, "big") + opus

    def decrypt(self, user_id: int, media_type: davey.MediaType, packet: bytes) -> bytes:
        self.calls.append((user_id, media_type))
        if user_id not in self.members:
            raise ValueError("Failed to decrypt: NoDecryptorForUser")
        if not packet.startswith(b"E2EE"):
            raise ValueError(
                "Failed to decrypt: DecryptionFailed(UnencryptedWhenPassthroughDisabled)"
            )
        if packet[4:12] != user_id.to_bytes(8, "big"):
            raise ValueError("Failed to decrypt: DecryptionFailed(NoValidCryptorFound)")
        return packet[12:]


def test_dave_frames_are_decrypted_per_sender_and_passthrough_frames_used_as_is(
    client: discord.Client, voice_client: voice_recv.VoiceRecvClient
) -> None:
    heard = Heard()
    alice, bob, carol = (
        member(client, ALICE, "Alice"),
        member(client, BOB, "Bob"),
        member(client, CAROL, "Carol"),
    )
    session = KeyedSession({ALICE, BOB})
    voice_client._connection.dave_protocol_version = 1
    voice_client._connection.dave_session = cast("davey.DaveSession", session)  # a stand-in
    a, b, c = opus_packets(300, 0.5), opus_packets(700, 0.5), opus_packets(500, 0.1)
    sink: UserAudioSink

    def route(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal sink
        sink = UserAudioSink(heard.audio, loop)
        attach(sink, voice_client)
        for seq, (pa, pb) in enumerate(zip(a, b, strict=True)):
            sealed_a = KeyedSession.seal(ALICE, pa)
            sink.write(alice, voice_recv.VoiceData(rtp(SSRC[ALICE], seq, sealed_a), alice))
            # Bob's first frames are unencrypted (a transition): usable as they are
            pb = pb if seq < 5 else KeyedSession.seal(BOB, pb)
            sink.write(bob, voice_recv.VoiceData(rtp(SSRC[BOB], seq, pb), bob))
        forged = KeyedSession.seal(ALICE, c[0])  # sealed with Alice's key, claimed by Bob's SSRC
        sink.write(bob, voice_recv.VoiceData(rtp(SSRC[BOB], 99, forged), bob))
        for seq, pc in enumerate(c):  # not in the MLS group yet: no decryptor for her
            sink.write(
                carol,
                voice_recv.VoiceData(rtp(SSRC[CAROL], seq, KeyedSession.seal(CAROL, pc)), carol),
            )
        sink.on_voice_member_speaking_stop(alice)
        sink.on_voice_member_speaking_stop(bob)

    drive(route)

    assert sink.dave_decrypted == 25 + 20 and sink.passthrough == 5
    # the forged frame and Carol's are dropped, never fed to opus as ciphertext
    assert sink.dave_errors == 1 + len(c) and sink.decode_errors == 0
    assert all(media == davey.MediaType.audio for _, media in session.calls)
    assert {u for u, _ in session.calls} == {ALICE, BOB, CAROL}
    assert CAROL not in heard.pcm
    assert heard.samples(ALICE).size == heard.samples(BOB).size == 8000
    assert dominant_hz(heard.samples(ALICE), 16000) == pytest.approx(300, abs=10)
    assert dominant_hz(heard.samples(BOB), 16000) == pytest.approx(700, abs=10)


def test_a_dave_session_still_being_keyed_passes_frames_through(
    client: discord.Client, voice_client: voice_recv.VoiceRecvClient
) -> None:
    heard = Heard()
    alice = member(client, ALICE, "Alice")
    # A real davey session, as discord.py makes one on SESSION_DESCRIPTION with dave_protocol_version 1;
    # it is not ready until the MLS commit or welcome from the voice gateway, which never comes here.
    session = davey.DaveSession(1, 999, 20)
    voice_client._connection.dave_protocol_version = 1
    voice_client._connection.dave_session = session
    assert not session.ready
    packets = opus_packets(300, 0.1)

    def route(loop: asyncio.AbstractEventLoop) -> None:
        sink = UserAudioSink(heard.audio, loop, out_rate=48000)
        attach(sink, voice_client)
        for seq, packet in enumerate(packets):
            sink.write(alice, voice_recv.VoiceData(rtp(SSRC[ALICE], seq, packet), alice))
        assert sink.passthrough == len(packets) and sink.dave_decrypted == sink.dave_errors == 0

    drive(route)

    assert len(heard.pcm[ALICE]) == len(packets) * FRAME * 2


def test_a_member_who_leaves_is_flushed_ended_and_forgotten(
    client: discord.Client,
) -> None:
    heard = Heard()
    alice, bob = member(client, ALICE, "Alice"), member(client, BOB, "Bob")
    packet = opus_packets(300, 0.02)[0]
    sink: UserAudioSink

    def route(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal sink
        sink = UserAudioSink(heard.audio, loop, on_end=heard.end)
        attach(sink, None)
        sink.write(alice, voice_recv.VoiceData(rtp(SSRC[ALICE], 0, packet), alice))
        sink.write(bob, voice_recv.VoiceData(rtp(SSRC[BOB], 0, packet), bob))
        sink.on_voice_member_disconnect(alice, SSRC[ALICE])
        sink.on_voice_member_disconnect(None, SSRC[BOB])  # not in the member cache: by SSRC

    drive(route)

    assert heard.ended == [(ALICE, "Alice"), (BOB, "Bob")] and sink.users == frozenset()
    assert heard.left == [True, True]
    assert len(heard.pcm[ALICE]) == len(heard.pcm[BOB]) == 320 * 2  # 20 ms at 16 kHz, tail flushed


def test_voice_recv_registers_the_sink_listeners() -> None:
    names = {event for event, _ in UserAudioSink.__sink_listeners__}
    assert names == {"on_voice_member_speaking_stop", "on_voice_member_disconnect"}


def test_audio_after_the_loop_closed_is_dropped_quietly(client: discord.Client) -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    sink = UserAudioSink(Heard().audio, loop, out_rate=48000)
    attach(sink, None)
    alice = member(client, ALICE, "Alice")
    packet = opus_packets(300, 0.02)[0]
    on_router_thread(
        lambda: sink.write(alice, voice_recv.VoiceData(rtp(SSRC[ALICE], 0, packet), alice))
    )
    assert sink.write_errors == 0 and sink.users == frozenset({ALICE})
    sink.cleanup()
    assert sink.users == frozenset()
