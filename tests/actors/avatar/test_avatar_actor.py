"""The avatar actor in process (hexbus.testing), sending real VMC datagrams to a loopback
receiver: a barge-in sends the shut mouth from its own handler, not at the next tick; what
perception sees turns her eyes and mirrors a held mood; a bad config is one line."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.avatar.actor import AvatarActor
from hexbus import ActorUnusable
from hexbus.pcm import to_pcm16
from hexbus.testing import ActorHarness
from schemas import AudioOut, BargeIn, Face, Observation, ReplyMeta, Speaking
from tests.support.avatar import OscReceiver
from tests.support.harness import poll_for

RATE = 24000


async def started(receiver: OscReceiver, **config: Any) -> ActorHarness[AvatarActor]:
    """The actor set up, its VMC receiver's address resolved; no frame loop: every frame the
    receiver gets is one a handler sent."""
    h = ActorHarness(AvatarActor, {"vmc": {"enabled": True, "port": receiver.port}, **config})
    await h.setup()
    assert h.actor.vmc is not None and await h.actor.vmc.resolve()
    return h


@pytest.fixture
def receiver() -> Any:
    r = OscReceiver()
    yield r
    r.close()


def chunks(seconds: float) -> list[bytes]:
    """A steady vowel-loud tone in 20 ms chunks: the mouth is open all through it."""
    t = np.arange(round(seconds * RATE)) / RATE
    pcm = to_pcm16(0.3 * np.sin(2 * np.pi * 220 * t))
    return [pcm[i : i + RATE // 50 * 2] for i in range(0, len(pcm), RATE // 50 * 2)]


def audio(reply_to: str, seq: int, platform: str = "voice") -> AudioOut:
    return AudioOut(
        channel="c1", platform=platform, reply_to=reply_to, sentence=0, seq=seq, rate=RATE
    )


@pytest.mark.parametrize("stop", ["speaking", "bargein"])
def test_a_barge_in_sends_the_shut_mouth_at_once(
    receiver: OscReceiver, tmp_path: Path, stop: str
) -> None:
    async def run() -> None:
        h = await started(receiver)
        h.actor.live = True
        for seq, chunk in enumerate(chunks(3.0)):
            await h.send(audio("r1", seq), key="c1", blob=chunk)
        assert h.actor.emit(time.monotonic()).mouth > 0  # mid-sentence
        if stop == "speaking":
            event: Any = Speaking(channel="c1", reply_to="r1", state="stop", interrupted=True)
            await h.send(event, key="c1")
        else:
            await h.send(BargeIn(channel="c1"), key="voice")
        await asyncio.to_thread(
            poll_for, lambda: len(receiver.packets) == 2, 10, what="the frame the barge-in sent"
        )
        assert receiver.frames()[-1][1]["A"] == 0.0
        # It stays shut: what was queued is gone, and chunks of that reply still on their way
        # are dropped as the players drop them.
        await h.send(audio("r1", 999), key="c1", blob=chunks(0.02)[0])
        assert h.actor.lipsync.mouth(time.monotonic()) == 0.0
        await h.stop()

    asyncio.run(run())


def test_an_ordinary_stop_lets_the_sentence_finish(receiver: OscReceiver, tmp_path: Path) -> None:
    async def run() -> None:
        h = await started(receiver)
        h.actor.live = True
        for seq, chunk in enumerate(chunks(1.0)):
            await h.send(audio("r1", seq), key="c1", blob=chunk)
        await h.send(Speaking(channel="c1", reply_to="r1", state="stop"), key="c1")
        assert h.actor.frames == 0 and h.actor.lipsync.speaking(time.monotonic())
        # A replayed barge-in (before the actor is live) is history: no frame, nothing dropped.
        h.actor.live = False
        await h.send(BargeIn(channel="c1"), key="voice")
        assert h.actor.frames == 0 and h.actor.lipsync.speaking(time.monotonic())
        # Speech on a platform the avatar does not follow moves nothing; nor does a chunk that
        # says it plays at 0 Hz (refused, with a line in the log).
        h2 = await started(receiver, platforms=["voice"])
        await h2.send(audio("r2", 0, platform="web"), key="c1", blob=chunks(0.02)[0])
        await h2.send(
            AudioOut(channel="c1", platform="voice", reply_to="r3", sentence=0, seq=0, rate=0),
            key="c1",
            blob=chunks(0.02)[0],
        )
        assert not h2.actor.lipsync.voices
        await h.stop()
        await h2.stop()

    asyncio.run(run())


def test_she_looks_at_the_person_and_mirrors_a_held_mood_below_her_own(
    receiver: OscReceiver,
) -> None:
    async def run() -> None:
        h = await started(receiver)
        h.actor.live = True
        now = time.monotonic
        face = Face(x=0.7, y=0.1, w=0.2, h=0.2)  # the right of the picture (her right), high
        await h.send(Observation(text="", present=True, people=1, faces=(face,), emotion="sad"))
        frame = h.actor.arbiter.frame(now(), 0.0)
        assert frame.gaze_x == pytest.approx(-0.6) and frame.gaze_y == pytest.approx(0.6)
        assert frame.expression == "worried"  # their sadness, mirrored
        await h.send(ReplyMeta(reply_to="m", person_id="p", channel="c1", emotion="smug"))
        assert h.actor.arbiter.frame(now(), 0.0).expression == "smug"  # her own outranks it
        # A face on a screen source is not someone to look at.
        h.actor.arbiter.look = None
        await h.send(
            Observation(text="", kind="screen", present=True, people=1, faces=(face,)), key="s"
        )
        assert h.actor.arbiter.look is None
        await h.stop()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({}, "no avatar output is enabled"),
        ({"vts": {"enabled": True, "plugin_name": "X"}}, "plugin_name must be 3 to 32"),
        ({"vmc": {"enabled": True}, "fps": 0}, "fps must be between"),
        ({"vmc": {"enabled": True}, "silent_db": -10, "open_db": -20}, "silent_db"),
        ({"vmc": {"enabled": True, "port": 70000}}, "vmc.port must be 1 to 65535"),
        ({"vmc": {"enabled": True}, "retry_initial_s": 0}, "retry_initial_s must be above 0"),
        ({"vmc": {"enabled": True, "blink": "A"}}, "need distinct names"),
        ({"vmc": {"enabled": True, "head_rest": [0.1]}}, "head_rest"),
        ({"vts": {"enabled": True, "url": "http://localhost:8001"}}, "ws:// or wss://"),
        ({"vts": {"enabled": True, "expression_fade_s": 5}}, "0 to 2 seconds"),
        ({"vts": {"enabled": True, "models": {"*": {"happy": "Smile"}}}}, "neither an expression"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_fix(config: dict[str, Any], says: str) -> None:
    async def run() -> None:
        h = ActorHarness(AvatarActor, config)
        with pytest.raises(ActorUnusable, match=says) as error:
            await h.setup()
        assert "\n" not in str(error.value)

    asyncio.run(run())
