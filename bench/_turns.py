"""End of turn alone, for bench/voice.py: Smart Turn (with and without the words' second opinion)
against the silence-only rule, on the same recordings, in the bench's own process."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import progress

# Sentences spoken whole by Kokoro, then cut at the quietest moment near each fraction of their
# length and given a pause there (seconds): mid-sentence prosody, as people pause while thinking.
# (A fragment synthesised on its own would end with a finished sentence's intonation, and espeak's
# flat voice sounds unfinished everywhere: neither is fit to judge a model that listens for
# intonation.) Not the tests' material.
PAUSED: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = (
    (
        "So what I was thinking is that we could go to the lake on Saturday morning.",
        ((0.35, 0.9), (0.7, 0.7)),
    ),
    ("Can you remind me to call my sister before dinner tonight?", ((0.4, 1.0), (0.75, 0.6))),
    ("The thing about my brother is that he never listens when I talk.", ((0.45, 1.2),)),
    (
        "I want to learn how to play the guitar, but I do not have the time.",
        ((0.3, 0.8), (0.6, 0.8)),
    ),
)


def with_pauses(audio: Any, cuts: tuple[tuple[float, float], ...]) -> Any:
    """``audio`` (16 kHz) with silence inserted at the quietest 40 ms near each cut fraction."""
    import numpy as np

    energy = np.convolve(audio**2, np.ones(640) / 640, mode="same")
    parts, last = [], 0
    for fraction, pause_s in cuts:
        centre = int(fraction * audio.size)
        lo, hi = max(last, centre - 4000), min(audio.size, centre + 4000)
        at = lo + int(np.argmin(energy[lo:hi]))
        parts += [audio[last:at], np.zeros(int(pause_s * 16000), dtype=np.float32)]
        last = at
    parts.append(audio[last:])
    return np.concatenate(parts)


def turns(audio: Any, judge: Any, words: Any = None) -> tuple[int, list[float]]:
    """How many turns ``audio`` becomes, and each turn end's delay after its last voiced sample (ms).

    With ``words`` (the STT's second opinion: transcript → finished?), a doubtful pause is
    transcribed and read as the STT does it; the stream goes on meanwhile for as long as that
    took here, and the turn ends then if the words read as finished and the pause still holds.
    """
    from actors.stt.vad import CHUNK, SAMPLE_RATE, Pause, Segmenter, SileroStream, SpeechEnd

    segmenter = Segmenter(vad=SileroStream(), judge=judge)
    ends, delays = 0, []
    i = 0

    def feed(n: int) -> list[Any]:
        nonlocal i, ends
        events: list[Any] = []
        while n > 0 and i + CHUNK <= audio.size:
            events += segmenter.feed(audio[i : i + CHUNK])
            i, n = i + CHUNK, n - CHUNK
        for event in events:
            if isinstance(event, SpeechEnd):
                ends += 1
                delays.append((i / SAMPLE_RATE - event.segment.end_s) * 1000)
        return events

    while i + CHUNK <= audio.size:
        for event in feed(CHUNK):
            if isinstance(event, Pause) and event.complete is not None and words is not None:
                began = time.perf_counter()
                finished = words(event.audio)
                feed(int((time.perf_counter() - began) * SAMPLE_RATE))
                if finished:
                    for end in segmenter.end_pause(event.end_s):
                        assert isinstance(end, SpeechEnd)
                        ends += 1
                        delays.append((i / SAMPLE_RATE - end.segment.end_s) * 1000)
    ends += sum(isinstance(e, SpeechEnd) for e in segmenter.flush())
    return ends, delays


def turn_figures(kokoro: Any, quick: bool, questions: tuple[str, ...]) -> dict[str, Any]:
    """End of turn by Smart Turn (alone, and with the words' second opinion) against silence
    alone, on the same recordings."""
    import numpy as np
    import soxr  # type: ignore[import-untyped]

    from actors.stt.turn import SmartTurn, TextTurn, TurnConfig
    from actors.stt.whisper import Whisper, WhisperConfig
    from tests.support.speech import espeak, real_speech, silence

    def spoken(text: str) -> Any:
        audio = soxr.resample(kokoro.synthesize(text), kokoro.rate, 16000).astype(np.float32)
        voiced = np.flatnonzero(np.abs(audio) > 1e-3)
        return audio[voiced[0] : voiced[-1] + 1]

    def padded(audio: Any) -> Any:
        return np.concatenate([silence(0.3), audio, silence(2.5)])

    model, text, whisper = SmartTurn(), TextTurn(), Whisper(WhisperConfig())
    whisper.model.get()
    threshold = TurnConfig().text_threshold

    def words(audio: Any) -> bool:
        result = whisper.transcribe(audio)
        return result is not None and text.complete(result.text) >= threshold

    paused = [padded(real_speech("jfk.wav"))]
    paused += [padded(with_pauses(spoken(t), c)) for t, c in (PAUSED[:2] if quick else PAUSED)]
    finished = {
        "kokoro": [padded(spoken(q)) for q in questions],
        "espeak": [padded(espeak(q, Path(tempfile.mkdtemp()), speed=150)) for q in questions],
    }
    out: dict[str, Any] = {}
    rules = (
        ("silence", None, None),
        ("model", model.complete, None),
        ("words", model.complete, words),
    )
    for rule, judge, second in rules:
        counts = [turns(audio, judge, second)[0] for audio in paused]
        out[f"turns_per_utterance_{rule}"] = round(sum(counts) / len(counts), 2)
        out[f"turns_{rule}"] = counts
        for voice, recordings in finished.items():
            delays = [d for audio in recordings for d in turns(audio, judge, second)[1]]
            suffix = "" if voice == "kokoro" else f"_{voice}"
            out[f"turn_end_ms_{rule}{suffix}"] = round(statistics.median(delays), 1)
            out[f"turn_end_ms_{rule}{suffix}_all"] = [round(d) for d in delays]
        progress(
            f"end of turn by {rule}: {counts} turns, ends {out[f'turn_end_ms_{rule}_all']} ms "
            f"(espeak {out[f'turn_end_ms_{rule}_espeak_all']} ms)"
        )
    # What the STT does by default: the model, with the words' second opinion on doubtful pauses
    out["turns_per_utterance"] = out["turns_per_utterance_words"]
    out["turn_end_ms"] = out["turn_end_ms_words"]
    out["target_turns_per_utterance"] = 1.0
    return out
