"""End-of-turn detection on real speech (espeak-ng) with the real Silero VAD v6 model."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from actors.stt.vad import (
    CHUNK,
    SAMPLE_RATE,
    Segmenter,
    SileroStream,
    SpeechEnd,
    SpeechStart,
    VadConfig,
    VadEvent,
    VadSegment,
)
from tests.support.speech import Audio, espeak, silence, white_noise

PHRASES = (
    "hello there, how are you today",
    "please remind me to call my sister",
    "what time does the library open on saturday",
)
TOLERANCE_S = 0.25
LONG_TEXT = (
    "I went down to the river and I saw a heron standing in the shallow water and it was "
    "waiting very patiently for a fish to swim by and then it struck like lightning and flew "
    "away over the trees toward the hills where the sun was setting slowly"
)


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="module")
def conversation(speech_dir: Path) -> tuple[Audio, list[tuple[float, float]]]:
    """Three phrases after 1 s of silence, 1 s apart; the second has a 0.2 s pause inside."""
    first, second, third = (espeak(text, speech_dir) for text in PHRASES)
    second = np.concatenate([second, silence(0.2), espeak("and buy some bread", speech_dir)])
    parts, placed, at = [silence(1.0)], [], SAMPLE_RATE
    for phrase in (first, second, third):
        placed.append((at / SAMPLE_RATE, (at + len(phrase)) / SAMPLE_RATE))
        parts += [phrase, silence(1.0)]
        at += len(phrase) + SAMPLE_RATE
    return np.concatenate(parts), placed


@pytest.fixture(scope="module")
def silero() -> Iterator[SileroStream]:
    yield SileroStream()


def run(segmenter: Segmenter, audio: Audio, piece: int = 0) -> list[VadEvent]:
    if piece <= 0:
        return segmenter.feed(audio) + segmenter.flush()
    events: list[VadEvent] = []
    for i in range(0, len(audio), piece):
        events += segmenter.feed(audio[i : i + piece])
    return events + segmenter.flush()


def segments(events: list[VadEvent]) -> list[VadSegment]:
    """The segments, after checking that every SpeechStart is closed by one SpeechEnd."""
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStart, SpeechEnd] * (len(events) // 2), kinds
    found = []
    for start, end in zip(events[::2], events[1::2], strict=True):
        assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
        assert start.at_s == end.segment.start_s
        found.append(end.segment)
    return found


def at(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def test_three_phrases_make_three_segments_where_they_were_placed(
    conversation: tuple[Audio, list[tuple[float, float]]], silero: SileroStream
) -> None:
    audio, placed = conversation
    silero.reset()
    silero.calls = 0
    found = segments(run(Segmenter(VadConfig(), silero), audio))
    assert len(found) == 3  # the 0.2 s pause inside the second phrase did not split it
    for segment, (start, end) in zip(found, placed, strict=True):
        assert abs(segment.start_s - start) <= TOLERANCE_S, (segment.start_s, start)
        assert abs(segment.end_s - end) <= TOLERANCE_S, (segment.end_s, end)
        assert not segment.cut
        assert segment.audio.dtype == np.float32
        # the audio is the stream's, from 200 ms of pre-roll to the last voiced sample
        assert segment.audio_start_s == pytest.approx(segment.start_s - 0.2)
        begin = at(segment.audio_start_s)
        assert np.array_equal(segment.audio, audio[begin : begin + len(segment.audio)])
    # the energy floor kept the model off the digital silence between phrases
    assert silero.calls < 0.7 * len(audio) // CHUNK


def test_webrtc_gate_finds_the_same_phrases(
    conversation: tuple[Audio, list[tuple[float, float]]], silero: SileroStream
) -> None:
    audio, placed = conversation
    silero.reset()
    found = segments(run(Segmenter(VadConfig(webrtc_gate=True), silero), audio))
    assert len(found) == 3
    for segment, (start, end) in zip(found, placed, strict=True):
        assert abs(segment.start_s - start) <= TOLERANCE_S
        assert abs(segment.end_s - end) <= TOLERANCE_S


def test_digital_silence_makes_no_events_and_never_runs_the_model(silero: SileroStream) -> None:
    silero.calls = 0
    assert run(Segmenter(VadConfig(), silero), silence(10.0)) == []
    assert silero.calls == 0


def test_white_noise_makes_no_events(silero: SileroStream) -> None:
    silero.reset()
    assert run(Segmenter(VadConfig(), silero), white_noise(10.0, dbfs=-20.0)) == []


def test_a_click_starts_nothing(silero: SileroStream) -> None:
    click = np.concatenate([silence(1.0), white_noise(0.1, dbfs=-10.0, seed=1), silence(1.0)])
    silero.reset()
    assert run(Segmenter(VadConfig(), silero), click) == []


def test_speech_shorter_than_min_speech_is_dropped(speech_dir: Path, silero: SileroStream) -> None:
    word = espeak("hello there, how are you today", speech_dir)
    burst = np.concatenate([silence(1.0), word[at(0.3) : at(0.42)], silence(1.0)])
    silero.reset()
    assert run(Segmenter(VadConfig(), silero), burst) == []
    # ...though the model does call it speech: min_speech_ms is what drops it
    silero.reset()
    assert len(segments(run(Segmenter(VadConfig(min_speech_ms=0), silero), burst))) == 1


def test_long_speech_is_cut_at_max_utterance_into_pieces_that_join_up(
    speech_dir: Path, silero: SileroStream
) -> None:
    speech = espeak(LONG_TEXT, speech_dir)
    assert len(speech) >= 12 * SAMPLE_RATE
    audio = np.concatenate([silence(0.5), speech, silence(1.0)])
    silero.reset()
    found = segments(run(Segmenter(VadConfig(max_utterance_s=5.0), silero), audio))
    assert len(found) >= 3
    assert all(s.cut for s in found[:-1]) and not found[-1].cut
    assert all(len(s.audio) <= 5 * SAMPLE_RATE for s in found)
    for before, after in itertools.pairwise(found):
        assert after.start_s == before.end_s  # no gap...
        assert after.audio_start_s == pytest.approx(after.start_s)  # ...and no pre-roll
    joined = np.concatenate([s.audio for s in found])
    begin = at(found[0].audio_start_s)
    assert np.array_equal(joined, audio[begin : at(found[-1].end_s)])
    assert abs(found[0].start_s - 0.5) <= TOLERANCE_S
    assert abs(found[-1].end_s - (0.5 + len(speech) / SAMPLE_RATE)) <= TOLERANCE_S


def test_feeding_odd_pieces_gives_the_same_segments_as_one_feed(
    conversation: tuple[Audio, list[tuple[float, float]]], silero: SileroStream
) -> None:
    audio, _ = conversation
    silero.reset()
    whole = segments(run(Segmenter(VadConfig(), silero), audio))
    silero.reset()
    pieces = segments(run(Segmenter(VadConfig(), silero), audio, piece=123))
    assert [(s.start_s, s.end_s, s.cut) for s in pieces] == [
        (s.start_s, s.end_s, s.cut) for s in whole
    ]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(pieces, whole, strict=True))


def test_speech_audio_grows_during_an_utterance_and_flush_ends_it(
    speech_dir: Path, silero: SileroStream
) -> None:
    phrase = espeak(PHRASES[1], speech_dir)
    segmenter = Segmenter(VadConfig(), silero)
    silero.reset()
    assert segmenter.feed(silence(0.5)) == []
    assert not segmenter.in_speech and len(segmenter.speech_audio()) == 0
    events = segmenter.feed(phrase[: len(phrase) // 2])
    assert [type(e) for e in events] == [SpeechStart]
    assert segmenter.in_speech
    partial = segmenter.speech_audio()
    events = segmenter.feed(phrase[len(phrase) // 2 :])
    assert events == [] and segmenter.in_speech
    assert len(segmenter.speech_audio()) > len(partial)
    (end,) = segmenter.flush()  # the stream stops mid-utterance: it still ends
    assert isinstance(end, SpeechEnd) and not end.segment.cut
    assert np.array_equal(end.segment.audio[: len(partial)], partial)
    assert abs(end.segment.end_s - (0.5 + len(phrase) / SAMPLE_RATE)) <= TOLERANCE_S
    assert not segmenter.in_speech and len(segmenter.speech_audio()) == 0
    assert segmenter.flush() == []


def test_silero_stream_scores_speech_above_silence(speech_dir: Path, silero: SileroStream) -> None:
    phrase = espeak(PHRASES[0], speech_dir)
    chunks = [phrase[i : i + CHUNK] for i in range(0, len(phrase) - CHUNK + 1, CHUNK)]
    silero.reset()
    first = [silero.prob(c) for c in chunks]
    silero.reset()
    assert [silero.prob(c) for c in chunks] == first  # reset forgets the stream
    assert max(first) > 0.9
    silero.reset()
    assert silero.prob(silence(CHUNK / SAMPLE_RATE)) < 0.1
    with pytest.raises(ValueError, match="512 samples"):
        silero.prob(silence(0.01))


def test_vad_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="neg_threshold"):
        VadConfig(threshold=0.3, neg_threshold=0.5)
    with pytest.raises(ValueError, match="pre-roll"):
        VadConfig(max_utterance_s=0.1)
    with pytest.raises(msgspec.ValidationError, match="silence_gap"):
        msgspec.convert({"silence_gap": 300}, VadConfig)
    assert msgspec.convert({"silence_gap_ms": 300}, VadConfig).silence_gap_ms == 300


def test_segmenter_takes_only_mono_float_samples(silero: SileroStream) -> None:
    with pytest.raises(ValueError, match="mono"):
        Segmenter(VadConfig(), silero).feed(np.zeros((2, 512), dtype=np.float32))
    with pytest.raises(TypeError, match="float"):
        Segmenter(VadConfig(), silero).feed(np.zeros(512, dtype=np.int16))
