"""One speaker's stream in the STT actor: its segmenter and resampler, the turn it may still go
on with, the transcript guessed during a pause, and the mapping from stream time to wall time."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from actors.stt.vad import Segmenter
from actors.stt.whisper import Result
from schemas import AudioFrame, SpeechStarted

RATE = 16000  # what the VAD and Whisper take


@dataclass
class Source:
    """One speaker's stream: where it goes, its resampler, its segmenter, its current utterance."""

    frame: AudioFrame  # the latest frame's metadata (person, channel, platform)
    segmenter: Segmenter
    rate: int
    resampler: object | None
    received: int = 0  # samples at 16 kHz fed so far
    # (samples fed before a frame, that frame's wall time), the last minute or so: stream time -> wall time
    anchors: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=3000))
    utterance: str = ""
    speech_start: float = 0.0
    last_turn: LastTurn | None = None  # the turn that ended last, while it may still go on
    continues: LastTurn | None = None  # the turn the utterance now open goes on with
    last_partial: float = 0.0
    partial_busy: bool = False
    seen: float = field(default_factory=time.monotonic)
    guess: Guess | None = None  # a transcript started during a doubtful pause
    # Set once the last utterance's final is published: the next one's waits for it (its
    # transcription may finish first: a guess started in the pause), so a message that revises
    # another never comes before it.
    published: asyncio.Event | None = None
    # A barge-in held until the utterance's first words show it is not Hex's own echo.
    held: SpeechStarted | None = None
    suspect: bool = False  # the utterance open began while Hex's voice could come back
    hers: bool = False  # a partial of it heard her words: later partials do not release it
    # The stream went quiet (AudioFrame.paused) at this monotonic time, and the wall time it
    # did; silence is fed for the time since, until more audio comes or the turn is settled.
    paused: float | None = None
    paused_wall: float = 0.0
    quiet_fed: int = 0  # samples of that silence fed so far


@dataclass(frozen=True)
class Guess:
    """A transcript of the turn as it would be were a doubtful pause to end it: used if it
    does (same last voiced sample, same audio), thrown away if the person goes on."""

    end_s: float
    size: int
    task: asyncio.Task[Result | None]


@dataclass(frozen=True)
class LastTurn:
    """A turn that ended, kept ``TurnConfig.rejoin_ms`` in case the person goes on."""

    message_id: str
    audio: np.ndarray  # 16 kHz float32, as transcribed
    end_s: float  # stream time of its last voiced sample
    speech_start: float  # wall time its speech began


def wall(src: Source, stream_s: float) -> float:
    """The wall time a sample was captured: its frame's time plus its place in the frame."""
    sample = int(stream_s * RATE)
    anchors = src.anchors
    if not anchors:
        return time.time()
    i = bisect.bisect_right(anchors, sample, key=lambda a: a[0]) - 1
    fed, at = anchors[max(i, 0)]
    return at + (sample - fed) / RATE
