"""The chaos soak's two-minute variant (bench/chaos.py, issue 13): the default deployment
(without stt and tts) with five scripted people on the console and the loopback Discord,
while processes are SIGKILLed and stalled, the disk fills up and the volatile bus is flooded.
Nothing accepted may be lost or answered twice, in the journal, on Discord or in memory, and
no actor may be left failed. Its figures (acknowledgement latency) belong to the bench, not
to this test, and so, for now, does ``discord_mismatched`` (a Discord reply whose shown text
differs from the journal's: seen once, 1 line of 48, in a run that SIGKILLed discord_io four
times in 40 s, and not since; the checker now reports both texts; open in issue 13's notes).
A failure shows the supervisor's and the Discord actor's story from Hex's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import soak

pytestmark = [pytest.mark.process, pytest.mark.slow]


def test_two_minutes_of_chaos_lose_nothing_and_answer_nothing_twice(tmp_path: Path) -> None:
    result = soak(2.0, voice=False, seed=5, keep=tmp_path)
    # On a failure, what the supervisor and the Discord actor said (lines carry no text).
    said = "\n".join(story(tmp_path / "hex.log"))
    assert result["kills"] > 0 and result["messages"] > 0, result
    assert result["lost"] == 0, f"{result['examples']}\n{said}"
    assert result["duplicated"] == 0, f"{result['examples']}\n{said}"
    assert result["memory_lost"] == 0 and result["memory_duplicated"] == 0, result
    assert result["failed_actors"] == [], f"{result}\n{said}"
    assert result["journaled"] >= result["messages"], result


def story(log: Path, last: int = 80) -> list[str]:
    """The log's lines about processes crashed and live again, Discord sessions and catch-ups:
    the last ``last``."""
    wanted = ("supervisor.", "actor.", "discord.ready", "discord.resumed", "discord.catch")
    lines = [line for line in log.read_text().splitlines() if any(w in line for w in wanted)]
    return lines[-last:]
