"""The avatar actor in process (hexbus.testing), sending real VMC datagrams to a loopback
receiver: a barge-in sends the shut mouth from its own handler, not at the next tick; what
perception sees turns her eyes and mirrors a held mood; a bad config is one line."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from actors.avatar.actor import AvatarActor
from hexbus import ActorUnusable
from hexbus.pcm import to_pcm16
from hexbus.testing import ActorHarness
from schemas import AudioOut, BargeIn, Face, Observation, ReplyMeta, Speaking
from tests.support.avatar import OscReceiver
from tests.support.harness import poll_for
from tests.support.speech import espeak

RATE = 24000


def harness(receiver: OscReceiver, **config: Any) -> ActorHarness[AvatarActor]:
    return ActorHarness(AvatarActor, {"vmc": {"enabled": True, "port": receiver.port}, **config})


@pytest.fixture
def receiver() -> Any:
    r = OscReceiver()
    yield r
    r.close()


def chunks(tmp_path: Path) -> list[bytes]:
    pcm = to_pcm16(espeak("Once upon a time there was a goblin.", tmp_path, rate=RATE))
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
        h = harness(receiver)
        await h.setup()  # no frame loop: every frame below is one a handler sent
        for seq, chunk in enumerate(chunks(tmp_path)):
            await h.send(audio("r1", seq), key="c1", blob=chunk)
        await asyncio.sleep(0.3)
        open_frame = await h.actor.emit(time.monotonic())
        assert open_frame.mouth > 0  # mid-sentence
        if stop == "speaking":
            event: Any = Speaking(channel="c1", reply_to="r1", state="stop", interrupted=True)
            await h.send(event, key="c1")
        else:
            await h.send(BargeIn(channel="c1"), key="voice")
        poll_for(lambda: len(receiver.packets) == 2, 10, what="the frame the barge-in sent")
        assert receiver.frames()[-1][1]["A"] == 0.0
        assert h.actor.lipsync.mouth(time.monotonic()) == 0.0  # and it stays shut
        await h.stop()

    asyncio.run(run())


def test_an_ordinary_stop_lets_the_sentence_finish(receiver: OscReceiver, tmp_path: Path) -> None:
    async def run() -> None:
        h = harness(receiver)
        await h.setup()
        for seq, chunk in enumerate(chunks(tmp_path)):
            await h.send(audio("r1", seq), key="c1", blob=chunk)
        await h.send(Speaking(channel="c1", reply_to="r1", state="stop"), key="c1")
        assert receiver.packets == [] and h.actor.lipsync.speaking(time.monotonic())
        # Speech on a platform the avatar does not follow moves nothing.
        h2 = harness(receiver, platforms=["voice"])
        await h2.setup()
        await h2.send(audio("r2", 0, platform="web"), key="c1", blob=chunks(tmp_path)[5])
        assert not h2.actor.lipsync.voices
        await h.stop()
        await h2.stop()

    asyncio.run(run())


def test_she_looks_at_the_person_and_mirrors_a_held_mood_below_her_own(
    receiver: OscReceiver,
) -> None:
    async def run() -> None:
        h = harness(receiver)
        await h.setup()
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
    ],
)
def test_a_bad_config_is_one_line_naming_the_fix(config: dict[str, Any], says: str) -> None:
    async def run() -> None:
        h = ActorHarness(AvatarActor, config)
        with pytest.raises(ActorUnusable, match=says) as error:
            await h.setup()
        assert "\n" not in str(error.value)

    asyncio.run(run())
