"""The Discord voice bridge's speaking side: BusAudioSource against real libopus and soxr."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import numpy as np
import pytest

from hexbus.pcm import from_pcm16, to_pcm16
from tests.support.voice_bridge import FRAME, dominant_hz, rms, sine

voice = pytest.importorskip("actors.discord_io.voice", reason="pip install 'hex[discord]'")

from discord.opus import Decoder, Encoder  # noqa: E402

from actors.discord_io.voice import FRAME_BYTES, BusAudioSource  # noqa: E402


def read_all(source: BusAudioSource, limit: int = 500) -> list[bytes]:
    frames = []
    while frame := source.read():
        frames.append(frame)
        assert len(frames) <= limit, "the source never ended"
    return frames


# -- speaking: BusAudioSource ---------------------------------------------------------------------


def test_one_second_at_24k_plays_as_exactly_50_opus_ready_frames() -> None:
    tone = sine(440, 24000, 1.0)
    pcm = to_pcm16(tone)
    cuts = [0, 2_002, 9_600, 9_602, 31_338, len(pcm)]  # uneven, sample-aligned chunks
    source = BusAudioSource()
    for a, b in itertools.pairwise(cuts):
        source.feed(pcm[a:b], 24000)
    source.finish()

    frames = read_all(source)

    # 24000 samples at 24 kHz are 48000 at 48 kHz. soxr's stream holds back its filter delay
    # until finish() flushes it with last=True, and then the total is exact: 48000 / 960 = 50
    # frames, the last one full, so no padded 51st frame and none lost to the delay.
    assert len(frames) == 50 and {len(f) for f in frames} == {FRAME_BYTES}
    assert source.read() == b"" and source.ended and source.frames_read == 50
    stereo = from_pcm16(b"".join(frames)).reshape(-1, 2)
    assert np.array_equal(stereo[:, 0], stereo[:, 1])  # mono duplicated, not panned
    assert abs(rms(stereo[:, 0]) - rms(tone)) < 0.02 * rms(tone)

    encoder, decoder, decoded = Encoder(), Decoder(), []  # type: ignore[no-untyped-call]
    for frame in frames:
        packet = encoder.encode(frame, FRAME)
        assert (
            Decoder.packet_get_nb_frames(packet) * Decoder.packet_get_samples_per_frame(packet)
            == FRAME
        )
        assert Decoder.packet_get_nb_channels(packet) == 2
        out = decoder.decode(packet, fec=False)
        assert len(out) == FRAME_BYTES
        decoded.append(out)
    heard = (
        from_pcm16(b"".join(decoded)).reshape(-1, 2).mean(axis=1)[5 * FRAME :]
    )  # past codec warm-up
    assert dominant_hz(heard, 48000) == pytest.approx(440, abs=10)
    assert rms(heard) == pytest.approx(rms(tone), rel=0.15)


def test_a_rate_change_mid_reply_loses_no_audio() -> None:
    source = BusAudioSource()
    source.feed(to_pcm16(sine(440, 24000, 0.5)), 24000)
    source.feed(to_pcm16(sine(440, 16000, 0.5)), 16000)
    source.finish()
    assert len(read_all(source)) == 50  # each stream is flushed whole: 24000 + 24000 samples


def test_a_partial_last_frame_is_padded_with_silence() -> None:
    source = BusAudioSource()
    source.feed(to_pcm16(sine(440, 48000, 0.03)), 48000)  # 1.5 frames
    source.finish()
    frames = read_all(source)
    assert len(frames) == 2 and len(frames[1]) == FRAME_BYTES
    assert frames[1][FRAME_BYTES // 2 :] == bytes(FRAME_BYTES // 2)


def test_clear_ends_playback_at_the_next_read() -> None:
    source = BusAudioSource()
    source.feed(to_pcm16(sine(440, 24000, 1.0)), 24000)
    assert [len(source.read()) for _ in range(5)] == [FRAME_BYTES] * 5
    assert source.queued_ms > 800
    source.clear()
    assert source.read() == b"" and source.queued_ms == 0 and source.ended
    source.feed(to_pcm16(sine(440, 24000, 0.5)), 24000)  # late TTS chunks of the dropped reply
    assert source.read() == b""


def test_a_starved_source_plays_silence_then_ends_after_the_idle_timeout() -> None:
    source = BusAudioSource(idle_timeout_s=0.06)
    source.feed(to_pcm16(sine(440, 48000, 0.02)), 48000)
    assert source.read() != voice.SILENCE
    started, silent = time.monotonic(), 0
    while (frame := source.read()) == voice.SILENCE:
        silent += 1
        assert time.monotonic() - started < 10, "the idle timeout never ended playback"
        time.sleep(0.005)
    assert frame == b"" and silent >= 1
    assert time.monotonic() - started >= 0.06
    source.feed(to_pcm16(sine(440, 48000, 0.1)), 48000)
    assert source.read() == b""  # an ended source stays ended: the actor plays a new one


def test_audio_arriving_within_the_idle_timeout_resumes_playback() -> None:
    source = BusAudioSource(idle_timeout_s=5.0)
    assert source.read() == voice.SILENCE  # the player started before the first sentence
    source.feed(to_pcm16(sine(440, 24000, 0.04)), 24000)
    source.finish()
    frames = read_all(source)
    assert len(frames) == 2 and voice.SILENCE not in frames


def test_feeding_on_the_loop_while_the_player_thread_reads_loses_and_reorders_nothing() -> None:
    chunks = [to_pcm16(sine(440 + 10 * i, 24000, 0.1)) for i in range(20)]
    alone = BusAudioSource()
    for chunk in chunks:
        alone.feed(chunk, 24000)
    alone.finish()
    expected = read_all(alone)

    source, played = BusAudioSource(idle_timeout_s=5.0), []

    def player() -> None:  # discord.py's AudioPlayer, minus the 20 ms pacing
        while frame := source.read():
            if frame == voice.SILENCE:
                time.sleep(0.001)
            else:
                played.append(frame)

    thread = threading.Thread(target=player, name="audio-player-test")
    thread.start()

    async def tts() -> None:
        for chunk in chunks:
            source.feed(chunk, 24000)
            await asyncio.sleep(0.002)
        source.finish()

    asyncio.run(tts())
    thread.join(timeout=10)
    assert not thread.is_alive() and played == expected and len(played) == 100


def test_the_source_is_pcm_for_discord_to_encode() -> None:
    assert not BusAudioSource().is_opus()
