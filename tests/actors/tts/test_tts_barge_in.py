"""The TTS actor in-process with the packaged Kokoro: a person who starts speaking stops Hex
once, however many times the VAD says they started while the stopped synthesis finishes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.tts.actor import TtsActor
from hexbus.testing import ActorHarness
from schemas import AudioOut, BargeIn, ReplySentence, Speaking, SpeechStarted
from schemas.base import Event

pytestmark = pytest.mark.slow  # Kokoro on the CPU: a few seconds

CHANNEL = "voice-local"
LONG = (
    "Once upon a time, in a cave full of shiny spoons and broken save files, a small goblin "
    "counted her treasures twice every morning before breakfast."
)


async def until(predicate: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_two_starts_of_one_interruption_stop_her_once(tmp_path: Path) -> None:
    async def scenario() -> list[Event]:
        h = ActorHarness(TtsActor, {"first_phrase_chars": 200}, data_dir=tmp_path)
        await h.setup()
        h.actor.live = True
        await h.send(
            ReplySentence(reply_to="r1", channel=CHANNEL, platform="voice", index=0, text=LONG)
        )
        channel = h.actor.channels[CHANNEL]
        await until(lambda: channel.synthesizing, "the synthesis to start")
        started = SpeechStarted(utterance="u1", source="mic", person_id="ana", channel=CHANNEL)
        await h.send(started)
        # The person paused and went on: the VAD says so again, while the stopped synthesis
        # is still finishing (never to be played).
        assert channel.synthesizing
        await h.send(SpeechStarted(utterance="u2", source="mic", person_id="ana", channel=CHANNEL))
        await until(lambda: not channel.synthesizing, "the stopped synthesis to finish")
        await asyncio.sleep(0.2)
        await h.stop()
        return h.published

    published = asyncio.run(scenario())
    stops = [e for e in published if isinstance(e, Speaking) and e.interrupted]
    assert len(stops) == 1 and stops[0].reply_to == "r1"
    assert len([e for e in published if isinstance(e, BargeIn)]) == 1
    assert not [e for e in published if isinstance(e, AudioOut)]  # stopped before a sound
