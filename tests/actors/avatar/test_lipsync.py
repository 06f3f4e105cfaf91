"""Lip-sync: chunks land on the playback clock back to back, the mouth follows each chunk's
loudness while it plays, and a barge-in shuts it at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.avatar.lipsync import Lipsync, openness, rms_of
from hexbus.pcm import to_pcm16
from tests.support.speech import espeak

RATE = 24000
CHUNK = RATE // 50  # 20 ms


def tone(seconds: float, level: float) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    return to_pcm16(level * np.sin(2 * np.pi * 220 * t))


@given(st.floats(0, 1), st.floats(0, 1))
def test_openness_is_monotonic_in_loudness_and_bounded(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert 0.0 <= openness(lo) <= openness(hi) <= 1.0


def test_silence_closes_the_mouth_and_full_scale_opens_it() -> None:
    assert openness(rms_of(tone(0.02, 0.0))) == 0.0
    assert openness(rms_of(tone(0.02, 0.9))) == 1.0
    assert rms_of(b"") == rms_of(b"\x01") == 0.0  # no whole sample: silent, not an error


@given(
    st.lists(
        st.tuples(st.floats(0, 0.5), st.integers(1, 4)),  # (delay before it arrives, chunks)
        min_size=1,
        max_size=30,
    )
)
def test_chunks_play_back_to_back_never_before_they_arrive(
    arrivals: list[tuple[float, int]],
) -> None:
    sync = Lipsync(latency_s=0.05)
    now, until = 100.0, 0.0
    for delay, n in arrivals:
        now += delay
        played = sync.heard("c", "r", tone(0.02 * n, 0.3), RATE, now)
        assert played is not None
        start, end = played
        assert start >= now + 0.05 - 1e-9  # never before it could be heard
        assert start == pytest.approx(max(now + 0.05, until))  # right after what is queued
        assert end == pytest.approx(start + 0.02 * n)
        until = end


def test_the_mouth_follows_each_chunk_while_it_plays() -> None:
    sync = Lipsync()
    loud, quiet = tone(0.02, 0.5), tone(0.02, 0.02)
    for chunk in (loud, quiet, loud):
        sync.heard("c", "r", chunk, RATE, 10.0)  # all in one burst, as TTS publishes
    assert sync.mouth(9.99) == 0.0  # not playing yet
    assert sync.mouth(10.01) == pytest.approx(openness(rms_of(loud)))
    assert sync.mouth(10.03) == pytest.approx(openness(rms_of(quiet)))
    assert sync.mouth(10.05) == pytest.approx(openness(rms_of(loud)))
    assert sync.mouth(10.07) == 0.0 and not sync.speaking(10.07)


def test_a_barge_in_shuts_the_mouth_and_drops_only_that_reply() -> None:
    sync = Lipsync()
    for _ in range(50):
        sync.heard("page", "story", tone(0.02, 0.5), RATE, 0.0)
    other = tone(1.0, 0.1)
    sync.heard("discord", "other", other, RATE, 0.0)
    assert sync.mouth(0.5) > 0
    assert sync.stop("page", "story", now=0.5) > 0
    # The page's story is gone; Discord's reply in another channel still plays.
    assert sync.mouth(0.51) == pytest.approx(openness(rms_of(other)))
    assert sync.stop("discord", now=0.6) == 1
    assert sync.mouth(0.61) == 0.0 and not sync.speaking(0.61)
    # A chunk of the next reply plays from now, not after the dropped audio; one of the stopped
    # reply still on its way is dropped (the players drop it too).
    assert sync.heard("page", "story", tone(0.02, 0.5), RATE, 0.7) is None
    played = sync.heard("page", "next", tone(0.02, 0.5), RATE, 0.7)
    assert played is not None and played[0] == pytest.approx(0.7)
    # A stop with no reply named (the page's Stop button) stops whatever was playing there.
    sync.heard("page", "later", tone(1.0, 0.5), RATE, 1.0)
    sync.stop("page", now=1.2)
    assert sync.heard("page", "later", tone(0.02, 0.5), RATE, 1.3) is None
    with pytest.raises(ValueError, match="0 Hz"):
        sync.heard("page", "x", tone(0.02, 0.5), 0, 1.4)


def test_real_speech_opens_and_closes_between_words(tmp_path: Path) -> None:
    speech = espeak("Tell me, Hex. What is the capital of Peru?", tmp_path, rate=RATE, trim=False)
    pcm = to_pcm16(speech)
    sync = Lipsync()
    for i in range(0, len(pcm), CHUNK * 2):
        sync.heard("c", "r", pcm[i : i + CHUNK * 2], RATE, 0.0)
    mouth = np.array([sync.mouth(t) for t in np.arange(0.01, len(speech) / RATE, 0.02)])
    assert mouth.max() > 0.8 and (mouth == 0).sum() >= 3  # wide in vowels, shut in pauses
    assert np.count_nonzero(np.diff(mouth > 0.3)) >= 10  # it moves: opens and closes many times
