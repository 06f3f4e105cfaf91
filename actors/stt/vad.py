"""Streaming end-of-turn detection for one speaker: Silero VAD v6 behind an energy floor.

:class:`Segmenter` takes 16 kHz float32 audio in pieces of any length and says when an
utterance starts and when it ends, handing over the utterance's audio. One Segmenter (and
one :class:`SileroStream`) per speaker: both carry state between calls and neither is
thread-safe.

Given a turn judge (:class:`actors.stt.turn.SmartTurn`'s ``complete``), a pause does not end
the turn by its length alone: after ``TurnConfig.check_ms`` of silence the judge reads the
utterance so far, and the turn ends there when it is confident the person has finished,
otherwise only when the pause reaches ``max_pause_ms`` or the person goes on (the pause is then
part of the utterance). Without one, ``silence_gap_ms`` of silence ends it, as before.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import msgspec
import numpy as np
import numpy.typing as npt

from actors.stt.models import INSTALL_HINT, onnx_session, silero_vad_path
from actors.stt.turn import TurnConfig
from hexbus.models import ModelMissing

SAMPLE_RATE: Final = 16_000
CHUNK: Final = 512  # Silero v6 at 16 kHz takes exactly 512 new samples (32 ms) per call
CONTEXT: Final = 64  # ...preceded by the last 64 samples of the chunk before
_WEBRTC_FRAME: Final = 480  # webrtcvad takes 10, 20 or 30 ms frames: 30 ms of each chunk

Audio: TypeAlias = npt.NDArray[np.float32]


class VadConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When speech starts and ends. Probabilities are Silero's, durations are of stream time."""

    threshold: float = 0.5  # a chunk this likely to be speech starts (or resumes) speech
    neg_threshold: float = 0.35  # below this, a chunk in speech starts the silence gap
    silence_gap_ms: int = 400  # this much silence ends the turn
    min_speech_ms: int = 250  # utterances with less voiced audio are dropped (coughs, clicks)
    max_utterance_s: float = 30.0  # longer speech is cut into pieces this long (Whisper's window)
    pre_roll_ms: int = 200  # audio kept before the first voiced chunk (soft onsets)
    energy_floor_dbfs: float = -55.0  # quieter chunks are silence without running the model
    webrtc_gate: bool = False  # run Silero only on chunks webrtcvad (mode 2) also calls speech

    def __post_init__(self) -> None:
        if not 0.0 < self.neg_threshold <= self.threshold < 1.0:
            raise ValueError(
                f"VAD thresholds need 0 < neg_threshold <= threshold < 1, got {self.neg_threshold} and {self.threshold}"
            )
        if min(self.silence_gap_ms, self.min_speech_ms, self.pre_roll_ms) < 0:
            raise ValueError("VAD silence_gap_ms, min_speech_ms and pre_roll_ms cannot be negative")
        if self.max_utterance_s * 1000 < self.pre_roll_ms + 2 * CHUNK * 1000 / SAMPLE_RATE:
            raise ValueError(
                f"VAD max_utterance_s={self.max_utterance_s} leaves no room for speech after the {self.pre_roll_ms} ms pre-roll"
            )


def _samples(ms: float) -> int:
    return round(ms * SAMPLE_RATE / 1000)


def _float_samples(samples: npt.ArrayLike) -> Audio:
    raw = np.asarray(samples)
    if not np.issubdtype(raw.dtype, np.floating):
        raise TypeError(
            f"audio must be float samples in [-1, 1], got {raw.dtype} (PCM16? divide by 32768)"
        )
    return raw.astype(np.float32, copy=False)


class SileroStream:
    """Silero VAD v6 over a stream, one 512-sample chunk at a time, keeping its state between calls.

    One ONNX session per instance on one thread: a speaker's chunks cost about 0.1 ms each.
    """

    def __init__(self, path: Path | None = None) -> None:
        model = path if path is not None else silero_vad_path()
        self._session: Any = onnx_session(model, "Silero VAD", INSTALL_HINT)
        self._input = np.zeros((1, CONTEXT + CHUNK), dtype=np.float32)
        self.calls = 0  # chunks the model has scored, for cost accounting
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far: the next chunk is scored as if it opened a new one."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._input[0, :CONTEXT] = 0.0

    def _take(self, chunk: npt.ArrayLike) -> Audio:
        a = np.asarray(chunk, dtype=np.float32)
        if a.shape != (CHUNK,):
            raise ValueError(
                f"Silero VAD takes {CHUNK} samples at {SAMPLE_RATE} Hz, got shape {a.shape}"
            )
        return a

    def prob(self, chunk: npt.ArrayLike) -> float:
        """The probability that ``chunk`` (512 float32 samples at 16 kHz) is speech."""
        a = self._take(chunk)
        self._input[0, CONTEXT:] = a
        out, self._h, self._c = self._session.run(
            None, {"input": self._input, "h": self._h, "c": self._c}
        )
        self._input[0, :CONTEXT] = a[-CONTEXT:]
        self.calls += 1
        return float(np.asarray(out).reshape(-1)[0])

    def skip(self, chunk: npt.ArrayLike) -> None:
        """Let ``chunk`` pass unscored, keeping the context the next chunk is scored with."""
        self._input[0, :CONTEXT] = self._take(chunk)[-CONTEXT:]


@dataclass(frozen=True, slots=True, eq=False)
class VadSegment:
    """One utterance. ``audio`` runs from the pre-roll to the last voiced sample (``end_s``).

    Times are seconds of stream time from the first sample fed. ``cut`` says the
    utterance was ended by ``max_utterance_s`` rather than by silence.
    """

    audio: Audio
    start_s: float
    end_s: float
    cut: bool = False
    # The turn judge's probability that the person had finished, when it ended the turn or
    # was last asked; None without a judge, or when it was never asked (a cut, a flush).
    complete: float | None = None

    @property
    def audio_start_s(self) -> float:
        """Stream time of ``audio[0]``: ``start_s`` less the pre-roll."""
        return self.end_s - len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """Speech has lasted ``min_speech_ms``; it began at stream time ``at_s``."""

    at_s: float


@dataclass(frozen=True, slots=True, eq=False)
class SpeechEnd:
    """The utterance announced by the last :class:`SpeechStart` is over."""

    segment: VadSegment


@dataclass(frozen=True, slots=True, eq=False)
class Pause:
    """The person paused: ``TurnConfig.guess_ms`` into the pause (``complete`` None), and again
    when the turn judge doubts they are done (``complete`` below its threshold: the turn may go
    on, end at ``max_pause_ms``, or end sooner through :meth:`Segmenter.end_pause`). ``audio``
    is what the utterance's :class:`SpeechEnd` would carry were the turn to end now (voiced to
    ``end_s``), so work on it (a transcript) can start during the pause."""

    audio: Audio
    end_s: float
    complete: float | None


VadEvent: TypeAlias = SpeechStart | SpeechEnd | Pause


class Segmenter:
    """Cuts one speaker's 16 kHz stream into utterances.

    :meth:`feed` takes float32 samples in pieces of any length (the result does not
    depend on how the stream is split) and returns the events they complete.
    :class:`SpeechStart` comes only once ``min_speech_ms`` of voiced audio has been heard,
    so a cough never interrupts anyone; shorter bursts produce no event at all. Each
    SpeechStart is followed by exactly one :class:`SpeechEnd`. Speech that outlasts
    ``max_utterance_s`` ends with ``cut=True`` and, if it goes on, a new utterance starts
    at once, without pre-roll, so consecutive cut segments join up sample for sample.

    Chunks below ``energy_floor_dbfs`` (and, with ``webrtc_gate``, those webrtcvad calls
    non-speech) count as silence without running Silero.
    """

    def __init__(
        self,
        config: VadConfig | None = None,
        vad: SileroStream | None = None,
        *,
        judge: Callable[[Audio], float] | None = None,
        turn: TurnConfig | None = None,
    ) -> None:
        self.config = config if config is not None else VadConfig()
        self.vad = vad if vad is not None else SileroStream()
        self.judge = judge
        self.turn = turn if turn is not None else TurnConfig()
        self.judged = 0  # times the judge was asked, for cost accounting
        cfg = self.config
        self._gap = _samples(cfg.silence_gap_ms)
        self._check = _samples(self.turn.check_ms)
        self._guess = _samples(self.turn.guess_ms)
        self._max_pause = _samples(self.turn.max_pause_ms)
        self._min_speech = _samples(cfg.min_speech_ms)
        self._pre_roll = _samples(cfg.pre_roll_ms)
        self._max = int(cfg.max_utterance_s * SAMPLE_RATE)
        self._reset_after = max(1, math.ceil(self._gap / CHUNK)) * CHUNK
        self._floor_power = 10.0 ** (cfg.energy_floor_dbfs / 10.0)
        self._webrtc: Any = None
        if cfg.webrtc_gate:
            try:
                import webrtcvad  # type: ignore[import-untyped]
            except ImportError as exc:
                raise ModelMissing(f"webrtcvad is not installed ({exc}): {INSTALL_HINT}") from None
            self._webrtc = webrtcvad.Vad(2)
        self._history: deque[Audio] = deque(maxlen=max(1, math.ceil(self._pre_roll / CHUNK)))
        self._restart()

    def _restart(self) -> None:
        self._pending: Audio = np.zeros(0, dtype=np.float32)
        self._pos = 0  # stream samples consumed in whole chunks
        self._floor = 0  # pre-roll never reaches back before this (the last segment's end)
        self._quiet_run = 0
        self._continues = False  # the last chunk was cut off by max_utterance_s while voiced
        self._history.clear()
        self._drop_utterance()

    def _drop_utterance(self) -> None:
        self._active = False  # a candidate or a confirmed utterance is open
        self._confirmed = False  # SpeechStart was sent
        self._chunks: list[Audio] = []
        self._length = 0
        self._start = 0
        self._audio_start = 0
        self._voiced = 0
        self._last_voiced_end = 0
        self._gap_start: int | None = None
        self._verdict: float | None = None  # the judge's answer in this pause, once asked
        self._paused = False  # this pause's first Pause event was sent
        self._judged: float | None = None  # the latest answer in this utterance

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStart` and its :class:`SpeechEnd`."""
        return self._confirmed

    def speech_audio(self) -> Audio:
        """The current utterance's audio so far (pre-roll included), empty outside speech."""
        if not self._confirmed:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks)

    def feed(self, samples: npt.ArrayLike) -> list[VadEvent]:
        """Take more of the stream (float32, 16 kHz, mono) and return the events it completes."""
        a = _float_samples(samples)
        if a.ndim != 1:
            raise ValueError(
                f"Segmenter.feed takes mono samples (one dimension), got shape {a.shape}"
            )
        buf = np.concatenate((self._pending, a)) if len(self._pending) else a
        whole = len(buf) - len(buf) % CHUNK
        events: list[VadEvent] = []
        for i in range(0, whole, CHUNK):
            self._step(buf[i : i + CHUNK].copy(), events)
        self._pending = buf[whole:].copy()
        return events

    def flush(self) -> list[VadEvent]:
        """The stream has ended: close an open utterance and start over at stream time 0.

        The last partial chunk (under 32 ms) is dropped; the Silero state is reset.
        """
        events: list[VadEvent] = []
        if self._confirmed:
            self._end(events, self._last_voiced_end, cut=False)
        self._restart()
        self.vad.reset()
        return events

    def _score(self, chunk: Audio) -> float:
        power = float(np.dot(chunk, chunk)) / CHUNK
        if power < self._floor_power:
            self._quiet_run += CHUNK
            if self._quiet_run == self._reset_after:
                self.vad.reset()  # a long silence: the next sound is scored as a fresh start
            self.vad.skip(chunk)
            return 0.0
        self._quiet_run = 0
        if self._webrtc is not None:
            pcm = (np.clip(chunk[:_WEBRTC_FRAME], -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
            if not self._webrtc.is_speech(pcm, SAMPLE_RATE):
                self.vad.skip(chunk)
                return 0.0
        return self.vad.prob(chunk)

    def _step(self, chunk: Audio, events: list[VadEvent]) -> None:
        cfg = self.config
        p = self._score(chunk)
        begin, end = self._pos, self._pos + CHUNK
        self._pos = end
        continues, self._continues = self._continues, False
        if not self._active:
            if continues and p >= cfg.neg_threshold:
                self._open(chunk, begin, pre_roll=False)
                self._confirm(events)
            elif p >= cfg.threshold:
                self._open(chunk, begin, pre_roll=True)
            self._history.append(chunk)
            if not self._active:
                return
        else:
            self._history.append(chunk)
            self._chunks.append(chunk)
            self._length += CHUNK
        # Silero's hysteresis: the gap opens below neg_threshold and closes only at threshold
        if p >= cfg.threshold:
            self._gap_start = None
            self._verdict = None
            self._paused = False
        elif p < cfg.neg_threshold and self._gap_start is None:
            self._gap_start = begin
        if self._gap_start is None:
            self._voiced += CHUNK
            self._last_voiced_end = end
        if not self._confirmed and self._voiced >= max(self._min_speech, 1):
            self._confirm(events)
        if self._gap_start is not None and self._turn_over(end - self._gap_start, events):
            self._finish(events, cut=False)
        elif self._length + CHUNK > self._max:
            self._continues = self._confirmed and self._gap_start is None
            self._finish(events, cut=True)

    def _turn_over(self, pause: int, events: list[VadEvent]) -> bool:
        """Does a pause of ``pause`` samples (so far) end the turn? (A doubtful verdict adds a
        :class:`Pause` to ``events``.)"""
        if self.judge is None:
            return pause >= self._gap
        if not self._confirmed:
            return pause >= self._max_pause
        end_s = self._last_voiced_end / SAMPLE_RATE
        if not self._paused and self._guess <= pause < self._check:
            self._paused = True
            events.append(Pause(self._voiced_audio(), end_s, None))
        if self._verdict is None and pause >= self._check:
            # The voiced audio, without the pause: asked with the pause (as pipecat does), the
            # model split more sentences on our recordings (bench/voice.py, turns_per_utterance).
            voiced = self._voiced_audio()
            self._verdict = self._judged = self.judge(voiced)
            self.judged += 1
            if self._verdict < self.turn.threshold and pause < self._max_pause:
                self._paused = True
                events.append(Pause(voiced, end_s, self._verdict))
        if self._verdict is not None and self._verdict >= self.turn.threshold:
            return True
        return pause >= self._max_pause

    def _voiced_audio(self) -> Audio:
        return np.concatenate(self._chunks)[: self._last_voiced_end - self._audio_start]

    def end_pause(self, end_s: float) -> list[VadEvent]:
        """End the turn in the pause after ``end_s`` now (a second opinion says the person is
        done), if that pause is still going on: its :class:`SpeechEnd`, or no events."""
        events: list[VadEvent] = []
        if (
            self._confirmed
            and self._gap_start is not None
            and self._last_voiced_end / SAMPLE_RATE == end_s
        ):
            self._finish(events, cut=False)
        return events

    def _open(self, chunk: Audio, begin: int, *, pre_roll: bool) -> None:
        self._active = True
        self._start = begin
        self._audio_start = begin
        self._chunks = []
        if pre_roll and self._history:
            want = min(self._pre_roll, begin - self._floor, CHUNK * len(self._history))
            if want > 0:
                self._chunks.append(np.concatenate(self._history)[-want:])
                self._audio_start = begin - want
        self._chunks.append(chunk)
        self._length = begin + CHUNK - self._audio_start
        self._voiced = 0
        self._gap_start = None

    def _confirm(self, events: list[VadEvent]) -> None:
        self._confirmed = True
        events.append(SpeechStart(at_s=self._start / SAMPLE_RATE))

    def _finish(self, events: list[VadEvent], *, cut: bool) -> None:
        if self._confirmed:
            self._end(events, self._last_voiced_end, cut=cut)
        self._drop_utterance()

    def _end(self, events: list[VadEvent], end: int, *, cut: bool) -> None:
        audio = np.concatenate(self._chunks)[: end - self._audio_start]
        events.append(
            SpeechEnd(
                VadSegment(
                    audio=audio,
                    start_s=self._start / SAMPLE_RATE,
                    end_s=end / SAMPLE_RATE,
                    cut=cut,
                    complete=None if cut else self._judged,
                )
            )
        )
        self._floor = end
