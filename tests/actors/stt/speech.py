"""Test speech: espeak-ng phrases at 16 kHz, and silences to place them with."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr  # type: ignore[import-untyped]

RATE = 16_000
Audio = npt.NDArray[np.float32]


def espeak(text: str, folder: Path) -> Audio:
    """``text`` spoken by espeak-ng, resampled to 16 kHz, without leading or trailing silence."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail(
            "espeak-ng is not installed: apt-get install espeak-ng (../shared/MODELS.md, 'Test speech')"
        )
    out = folder / f"espeak-{abs(hash(text)):x}.wav"
    subprocess.run([exe, "-w", str(out), text], check=True, capture_output=True, timeout=30)
    with wave.open(str(out)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audio = np.asarray(
        soxr.resample(pcm.astype(np.float32) / 32768.0, rate, RATE), dtype=np.float32
    )
    sounding = np.flatnonzero(np.abs(audio) > 1e-3)
    return audio[sounding[0] : sounding[-1] + 1].copy()


def silence(seconds: float) -> Audio:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def white_noise(seconds: float, dbfs: float = -20.0, seed: int = 0) -> Audio:
    """Gaussian noise with an RMS level of ``dbfs`` relative to full scale."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * RATE)) * 10 ** (dbfs / 20)).astype(np.float32)
