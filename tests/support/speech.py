"""Test speech: espeak-ng phrases, silence and noise as float32 audio, WAVs built from them, real
human recordings (:func:`real_speech`), and the word error rate used to judge transcripts."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr  # type: ignore[import-untyped]

from actors.stt.console import read_wav, write_wav
from hexbus.pcm import to_pcm16

RATE = 16_000
Audio = npt.NDArray[np.float32]

REAL_SPEECH = Path(__file__).resolve().parents[2] / ".cache" / "speech"
# What J. F. Kennedy says in jfk.wav: one sentence, with pauses of 1.8, 1.1 and 0.6 s inside it.
JFK = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)

__all__ = [
    "JFK",
    "RATE",
    "Audio",
    "espeak",
    "make_wav",
    "real_speech",
    "silence",
    "wer",
    "white_noise",
    "word_errors",
    "words",
]


def espeak(
    text: str, folder: Path, *, rate: int = RATE, speed: int | None = None, trim: bool = True
) -> Audio:
    """``text`` spoken by espeak-ng (``speed`` words per minute) at ``rate``, with its leading and
    trailing silence cut off when ``trim``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail(
            "espeak-ng is not installed: apt-get install espeak-ng (../shared/MODELS.md, 'Test speech')"
        )
    out = folder / f"espeak-{abs(hash((text, speed))):x}.wav"
    args = [exe, *(["-s", str(speed)] if speed else []), "-w", str(out), text]
    subprocess.run(args, check=True, capture_output=True, timeout=30)
    samples, source_rate = read_wav(out)
    audio = np.asarray(
        soxr.resample(samples, source_rate, rate) if source_rate != rate else samples, np.float32
    )
    if not trim:
        return audio
    sounding = np.flatnonzero(np.abs(audio) > 1e-3)
    return audio[sounding[0] : sounding[-1] + 1].copy()


def silence(seconds: float, rate: int = RATE) -> Audio:
    return np.zeros(round(seconds * rate), dtype=np.float32)


def white_noise(seconds: float, dbfs: float = -20.0, seed: int = 0) -> Audio:
    """Gaussian noise at 16 kHz with an RMS level of ``dbfs`` relative to full scale."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * RATE)) * 10 ** (dbfs / 20)).astype(np.float32)


def make_wav(path: Path, parts: list[str | float], rate: int = RATE) -> list[tuple[float, float]]:
    """Write ``parts`` (text to speak at 150 wpm, or seconds of silence) to ``path`` as one mono
    PCM16 WAV; returns each phrase's (start, end) in seconds."""
    pieces: list[Audio] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for part in parts:
        if isinstance(part, str):
            chunk = espeak(part, path.parent, rate=rate, speed=150, trim=False)
            spans.append((at / rate, (at + chunk.size) / rate))
        else:
            chunk = np.zeros(int(part * rate), np.float32)
        pieces.append(chunk)
        at += chunk.size
    write_wav(path, to_pcm16(np.concatenate(pieces)), rate)
    return spans


def words(text: str) -> list[str]:
    """Lower-case words without punctuation or apostrophes ("Don't!" → "dont")."""
    return re.sub(r"[^\w\s']|'", "", text.lower()).split()


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words: substitutions, insertions and deletions."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref != hyp))
    return row[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's length."""
    ref = words(reference)
    return word_errors(ref, words(hypothesis)) / max(1, len(ref))


def real_speech(name: str) -> Audio:
    """A real recording from .cache/speech (scripts/_speech.sh fetches them), as 16 kHz float32."""
    path = REAL_SPEECH / name
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: run scripts/test, or `source scripts/_speech.sh && fetch_speech`"
        )
    audio, rate = read_wav(path)
    assert rate == RATE, f"{path} is {rate} Hz"
    return np.asarray(audio, dtype=np.float32)


def at_pauses(
    audio: Audio, rate: int = RATE, pause_s: float = 0.2, most_s: float = 20.0
) -> list[Audio]:
    """``audio`` cut in the middle of its pauses (``pause_s`` or longer, 30 dB below its loudest
    10 ms) into pieces of at most ``most_s`` where the pauses allow (else cut at ``most_s``): how
    VAD hands a long reply to Whisper, which decodes one long, accented window into a loop more
    often than a few sentences at a time."""
    hop = rate // 100
    frames = audio[: audio.size // hop * hop].reshape(-1, hop).astype(np.float64)
    loudness = np.sqrt(np.mean(frames**2, axis=1))
    quiet = loudness < loudness.max(initial=0.0) * 10 ** (-30 / 20)
    cuts, run = [], 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        if run == round(pause_s * 100):
            cuts.append((i - run // 2) * hop)
    most = round(most_s * rate)
    pieces, start = [], 0

    def up_to(end: int) -> None:  # no pause in time: cut where Whisper's window would end
        nonlocal start
        while end - start > most:
            pieces.append(audio[start : start + most])
            start += most

    bounds = [*cuts, audio.size]
    for cut, following in itertools.pairwise(bounds):
        up_to(cut)
        if following - start > most:
            pieces.append(audio[start:cut])
            start = cut
    up_to(audio.size)
    pieces.append(audio[start:])
    return [p for p in pieces if p.size > 0]
