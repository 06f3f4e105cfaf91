"""The page's microphone worklet at every common capture rate, run under nodejs: 16 kHz out,
every sample a sample (a dropped or zeroed one would buzz), 40 ms frames."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.harness import REPO

SCRIPT = Path(__file__).parent / "js" / "resample.mjs"
WORKLET = REPO / "actors" / "web" / "static" / "mic-worklet.js"


def test_the_worklet_resamples_any_capture_rate_to_16_khz_without_a_gap() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("nodejs is not installed: scripts/test installs it (apt-get install nodejs)")
    out = subprocess.run(
        [node, str(SCRIPT), str(WORKLET)], capture_output=True, text=True, timeout=60, check=True
    )
    runs = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["rate"] for r in runs} == {8000, 16000, 22050, 24000, 32000, 44100, 48000}
    for run in runs:
        assert run["out"] == run["expected"] and run["bad"] == 0, run
        assert run["frames"] == [640], run  # 40 ms at 16 kHz
        assert 15000 < run["peak"] < 16800, run  # the tone's level kept (0.5 of full scale)
        assert run["step"] < 3200, run  # no sample dropped or zeroed
