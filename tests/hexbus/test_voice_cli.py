"""`hexbus voice`: bad input is one clear line, before anything connects."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

from actors.stt.console import read_wav
from tests.support.harness import REPO


def voice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hexbus.cli", "voice", *args, "--run-dir", "/nonexistent/run"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_a_missing_or_unreadable_recording_is_one_line(tmp_path: Path) -> None:
    out = voice("--input-wav", str(tmp_path / "nope.wav"))
    assert out.returncode == 1 and out.stderr == f"hexbus: {tmp_path / 'nope.wav'}: no such file\n"
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF1234WAVEnot really")
    out = voice("--input-wav", str(junk))
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1
    assert "not a readable PCM WAV file" in out.stderr and "sox" in out.stderr


def test_either_a_recording_or_the_microphone() -> None:
    out = voice()
    assert out.returncode == 2 and "give either --input-wav FILE or --mic" in out.stderr


def test_no_microphone_is_one_line() -> None:
    out = voice("--mic")  # this machine has no audio device (and maybe no PortAudio)
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
    assert "--mic needs sounddevice" in out.stderr or "no audio device" in out.stderr


def test_stereo_and_8_bit_recordings_are_read_as_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo8.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes([128, 255] * 800))  # left silent, right at full scale
    samples, rate = read_wav(path)
    assert rate == 8000 and samples.shape == (800,)
    assert abs(float(samples.mean()) - 127 / 256) < 0.01
