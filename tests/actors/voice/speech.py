"""Test speech: espeak-ng phrases and silences joined into one mono PCM16 WAV."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from hexbus.voice import read_wav, write_wav


def phrase(text: str, workdir: Path, rate: int = 16000) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 samples at ``rate``."""
    import soxr  # type: ignore[import-untyped]

    out = workdir / f"espeak-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(out), text], check=True, capture_output=True)
    samples, source_rate = read_wav(out)
    return soxr.resample(samples, source_rate, rate).astype(np.float32) if source_rate != rate else samples


def make_wav(path: Path, parts: list[str | float], rate: int = 16000) -> list[tuple[float, float]]:
    """Write ``parts`` (text to speak, or seconds of silence) to ``path``; returns each phrase's (start, end) s."""
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for part in parts:
        chunk = np.zeros(int(part * rate), np.float32) if isinstance(part, float) else phrase(part, path.parent, rate)
        if isinstance(part, str):
            spans.append((at / rate, (at + chunk.size) / rate))
        pieces.append(chunk)
        at += chunk.size
    audio = np.concatenate(pieces)
    write_wav(path, (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(), rate)
    return spans


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / max(1, len(ref))


__all__ = ["make_wav", "phrase", "read_wav", "wer", "words"]
