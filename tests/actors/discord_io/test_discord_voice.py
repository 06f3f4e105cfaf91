"""The Discord actor end to end, voice: joining, speaking audio.out as opus, hearing each member
apart, rejoining after a crash; and the whole loop through STT, the real brain and TTS.

discord.py's real client in the actor's process, against a Discord-compatible server on loopback
(tests/support/fakediscord), through a real supervisor and bus (tests/support/discord/hexes.py).
Every test here starts real processes: marked slow.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hexbus.bus import BusClient
from tests.support.discord.hexes import (
    bodies,
    discord_toml,
    journal,
    start,
)
from tests.support.fakediscord import FakeDiscord
from tests.support.harness import FAST_BUS, Hex, actor_toml, poll_for

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

pytestmark = [pytest.mark.process, pytest.mark.slow]


def tone(hz: float, seconds: float, rate: int) -> npt.NDArray[np.float32]:
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(samples: npt.NDArray[np.floating], rate: int) -> float:
    import numpy as np

    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def test_voice_join_plays_audio_out_as_opus_and_hears_each_member_as_their_own_stream(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    import numpy as np

    from hexbus.pcm import from_pcm16, to_pcm16
    from schemas import AudioFrame, AudioOut, Speaking

    hx = start(fake, ca_file=fake.voice_ca_file, voice_connect_timeout_s=10.0)
    hexes.append(hx)
    ana, bo = fake.add_user("ana"), fake.add_user("bo")
    room = fake.add_voice_channel("room")
    general = fake.general_channel_id
    outsider = fake.add_user("cy")
    not_in_voice = fake.interact("voice", subcommand="join", user_id=outsider, channel_id=general)
    poll_for(
        lambda: fake.interaction(not_in_voice)["callbacks"],
        10,
        what="the answer to a join from outside voice",
    )
    assert "Join a voice channel first" in fake.interaction(not_in_voice)["original"]["content"]
    fake.set_voice_state(ana, room)
    fake.set_voice_state(bo, room)
    joined = fake.interact("voice", subcommand="join", user_id=ana, channel_id=general)

    def join_answer() -> str | None:
        return (fake.interaction(joined).get("original") or {}).get("content") or None

    assert "I'm in" in poll_for(join_answer, 20, what="the bot in the voice channel")
    connection = fake.voice_connection
    assert connection is not None and connection["ready"] and connection["channel_id"] == room
    conversation = f"discord-voice-{room}"
    frames: dict[str, list[tuple[AudioFrame, bytes]]] = {}

    async def talk() -> None:
        client = BusClient(hx.endpoints, "voice-tester")
        client.start()
        client.subscribe("audio.frame")
        await asyncio.sleep(0.3)

        async def collect() -> None:
            async for envelope, blob in client.volatile():
                if isinstance(envelope.body, AudioFrame):
                    frames.setdefault(envelope.body.source, []).append((envelope.body, blob or b""))

        collector = asyncio.create_task(collect())
        # Hex speaks: what TTS publishes for a reply to this conversation, 100 ms chunks at 24 kHz.
        speech = to_pcm16(tone(440, 1.0, 24_000))
        for seq in range(10):
            chunk = speech[seq * 4800 : (seq + 1) * 4800]
            client.publish_volatile(
                AudioOut(
                    channel=conversation,
                    platform="voice",
                    reply_to="r1",
                    sentence=0,
                    seq=seq,
                    rate=24_000,
                    last=seq == 9,
                ),
                key=conversation,
                blob=chunk,
            )
            await asyncio.sleep(0.05)
        client.publish_volatile(
            Speaking(channel=conversation, reply_to="r1", state="stop"), key=conversation
        )
        # Two members talk at once; each is heard as their own stream.
        stereo = {
            user: to_pcm16(np.repeat(tone(hz, 1.0, 48_000), 2))
            for user, hz in ((ana, 300), (bo, 700))
        }
        spoken = [fake.speak(user, room, pcm) for user, pcm in stereo.items()]
        await asyncio.gather(*(asyncio.wrap_future(s) for s in spoken))

        # Until each stream has its second of audio and says it went quiet; not at the first
        # time it does: on a busy machine a 200 ms stall of the packets is a pause to
        # voice-recv (speaking stopped), and the rest follows, then a pause of its own.
        def complete(user: int) -> bool:
            stream = frames.get(f"discord:{fake.guild_id}:{user}", [])
            heard = sum(len(blob) for _, blob in stream) // 2
            return bool(stream) and stream[-1][0].paused and heard >= 0.8 * 16_000

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(complete(u) for u in (ana, bo)):
            await asyncio.sleep(0.1)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await client.close()

    asyncio.run(asyncio.wait_for(talk(), 60))

    # Hex's voice reached Discord as 20 ms opus frames (each decodes to 960 stereo samples) of the tone.
    packets = poll_for(
        lambda: fake.voice_received(room) if len(fake.voice_received(room)) >= 50 else None,
        10,
        what="Hex's audio at the voice server",
    )
    pcm = np.frombuffer(fake.voice_pcm(room), dtype="<i2").astype(np.float32).reshape(-1, 2)
    assert len(pcm) == 960 * len(packets)
    assert abs(dominant_hz(pcm[:, 0] / 32768, 48_000) - 440) < 10
    # Each member: their own source, person and 16 kHz stream, their own tone, then a pause
    # (they stopped sending: that alone never ends their turn, STT's pause rules do).
    for user, hz in ((ana, 300), (bo, 700)):
        stream = frames[f"discord:{fake.guild_id}:{user}"]
        assert {f.person_id for f, _ in stream} == {f"discord:{user}"}
        assert {f.channel for f, _ in stream} == {conversation} and {f.rate for f, _ in stream} == {
            16_000
        }
        assert [f.seq for f, _ in stream] == list(range(len(stream)))
        assert stream[-1][0].paused and not any(f.end for f, _ in stream)
        audio = from_pcm16(b"".join(blob for _, blob in stream))
        assert 0.8 * 16_000 <= len(audio) <= 1.3 * 16_000
        assert abs(dominant_hz(audio, 16_000) - hz) < 10, (user, hz)
    assert len(frames) == 2  # Hex's own voice is not one of the streams

    # A SIGKILL while in voice: the actor comes back into the same channel by itself.
    old = fake.voice_connection
    assert old is not None
    os.kill(hx.pid("discord"), signal.SIGKILL)
    poll_for(
        lambda: (
            (c := fake.voice_connection) is not None
            and c is not old
            and c["connected"]
            and c["ready"]
            and c["ssrc"] != old["ssrc"]
        ),
        40,
        what="Hex back in the voice channel after its restart",
    )

    # /voice leave, then /voice join again.
    left = fake.interact("voice", subcommand="leave", user_id=bo, channel_id=general)
    poll_for(
        lambda: "Left" in ((fake.interaction(left).get("original") or {}).get("content") or ""),
        15,
        what="the answer to /voice leave",
    )
    poll_for(
        lambda: not (fake.voice_connection or {}).get("connected"),
        15,
        what="Hex out of the channel",
    )
    again = fake.interact("voice", subcommand="join", user_id=bo, channel_id=general)
    poll_for(
        lambda: "I'm in" in ((fake.interaction(again).get("original") or {}).get("content") or ""),
        20,
        what="Hex back in the channel",
    )

    # Everyone leaves: Hex leaves too, and forgets the channel.
    fake.leave_voice(ana)
    fake.leave_voice(bo)
    poll_for(
        lambda: not (fake.voice_connection or {}).get("connected"),
        15,
        what="Hex to leave the empty channel",
    )


def test_a_member_speaks_in_voice_and_hex_answers_aloud_in_the_channel(
    fake: FakeDiscord, hexes: list[Hex], tmp_path: Path
) -> None:
    """The whole voice loop through Discord: a member's speech (real opus over the loopback voice
    server) → audio.frame → STT (Whisper) → the real brain → TTS (Kokoro) → audio.out → Hex's
    voice back in the channel."""
    import shutil
    import tempfile

    import numpy as np
    import soxr  # type: ignore[import-untyped]

    from hexbus.pcm import to_pcm16
    from schemas import Reply, Utterance
    from tests.support.harness import REPO
    from tests.support.speech import espeak

    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    stack = (
        actor_toml(
            "brain", "actors.brain.actor:BrainActor", heartbeat_timeout_s=10.0, config={"seed": 7}
        )
        + actor_toml("stt", "actors.stt.actor:SttActor", heartbeat_timeout_s=30.0)
        + actor_toml("tts", "actors.tts.actor:TtsActor", heartbeat_timeout_s=30.0)
    )
    hx = Hex(FAST_BUS + stack + discord_toml(fake, ca_file=fake.voice_ca_file), root=root).start()
    hexes.append(hx)
    poll_for(lambda: fake.connected, 20, what="the actor's gateway session")
    ana = fake.add_user("ana")
    room = fake.add_voice_channel("room")
    fake.set_voice_state(ana, room)
    joined = fake.interact(
        "voice", subcommand="join", user_id=ana, channel_id=fake.general_channel_id
    )
    poll_for(
        lambda: "I'm in" in ((fake.interaction(joined).get("original") or {}).get("content") or ""),
        20,
        what="Hex in the voice channel",
    )

    said = "What is the capital of France?"
    speech = espeak(said, tmp_path, rate=48_000, speed=150, trim=False)
    padded = np.concatenate([speech, np.zeros(9600, np.float32)])
    before = len(fake.voice_received(room))
    fake.speak(ana, room, to_pcm16(np.repeat(padded, 2))).result(30)

    conversation = f"discord-voice-{room}"

    # The newest transcript of the turn: on a busy machine a stall of the packets can end the
    # utterance early ("What is the capital?"), and the rest follows in a later transcript.
    def transcript() -> list[Utterance] | None:
        found = [
            e.body
            for e in journal(hx, ["stt.final"])
            if isinstance(e.body, Utterance) and e.body.text
        ]
        return found if found and "france" in found[-1].text.lower() else None

    finals = poll_for(transcript, 60, what="a transcript of the turn with 'France' in it")
    assert {(f.person_id, f.channel) for f in finals} == {(f"discord:{ana}", conversation)}
    reply = poll_for(lambda: bodies(hx, ["chat.reply.voice"], Reply), 120, what="the brain's reply")
    assert reply[0].channel == conversation and reply[0].text.strip()

    sizes: list[int] = []

    # Hex's audio since the member spoke, once it has stopped growing
    def spoken() -> list[npt.NDArray[np.float32]] | None:
        pcm = (
            np.frombuffer(fake.voice_pcm(room), dtype="<i2")
            .astype(np.float32)
            .reshape(-1, 2)[before * 960 :]
        )
        sizes.append(len(pcm))
        still = len(sizes) > 6 and len(set(sizes[-6:])) == 1
        loud = len(pcm) > 48_000 and np.sqrt(np.mean((pcm[:, 0] / 32768) ** 2)) > 0.01
        return [pcm] if still and loud else None

    heard = poll_for(spoken, 120, interval=0.5, what="Hex's spoken reply in the voice channel")[0]
    # What reached the channel is speech Whisper can read back: the reply's words, spoken.
    from actors.stt.whisper import Whisper, WhisperConfig

    whisper = Whisper(WhisperConfig(language="en"))  # Kokoro's packaged voice is accented (README)
    mono16 = np.asarray(soxr.resample(heard[:, 0] / 32768, 48_000, 16_000), dtype=np.float32)
    result = whisper.transcribe(mono16)
    assert result is not None and set(result.text.lower().split()) & set(
        reply[0].text.lower().split()
    )
