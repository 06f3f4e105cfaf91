"""What the brain's prompt says of what Hex sees: fresh pictures and recent moments only."""

from __future__ import annotations

from actors.brain.config import BrainConfig, BrainState
from actors.brain.sight import Sight
from schemas import Observation, PerceptionSwitched, VisionMoment


def test_the_picture_is_in_the_prompt_while_fresh_and_the_moment_a_little_longer() -> None:
    sight = Sight(BrainState(), BrainConfig(observation_fresh_s=30, moment_fresh_s=120))
    assert sight.line(1000.0) == ""
    sight.observed(Observation(text="one person, looking at the screen", at=1000.0), 1000.0)
    sight.moment(
        VisionMoment(
            change="arrived", source="webcam", at=1000.0, text="they just came back after 2 hours"
        )
    )
    assert sight.line(1010.0) == (
        "one person, looking at the screen; they just came back after 2 hours"
    )
    assert sight.line(1031.0) == "they just came back after 2 hours"  # the picture is stale
    assert sight.line(1121.0) == ""  # and the moment is old news


def test_an_older_picture_arriving_late_never_replaces_a_newer_one() -> None:
    state = BrainState()
    sight = Sight(state, BrainConfig())
    sight.observed(Observation(text="nobody in view", at=2000.0), 2000.0)
    sight.observed(Observation(text="one person, looking away", at=1990.0), 2001.0)
    assert state.observation == "nobody in view" and state.observed_at == 2000.0


def test_each_source_has_its_picture_and_a_pause_forgets_what_it_showed() -> None:
    sight = Sight(BrainState(), BrainConfig())
    sight.observed(Observation(text="one person, looking away", source="webcam", at=10.0), 10.0)
    sight.observed(Observation(text="their screen", source="screen", kind="screen", at=10.5), 10.5)
    sight.observed(Observation(text="nobody in view", source="webcam", at=9.0), 11.0)  # late
    sight.moment(VisionMoment(change="left", source="webcam", at=10.0, text="they just left"))
    assert sight.line(12.0) == (
        "screen: their screen; webcam: one person, looking away; they just left"
    )
    sight.switched(PerceptionSwitched(paused=("webcam",)))
    assert sight.line(12.0) == "their screen"
    sight.switched(PerceptionSwitched(paused=("*",)))
    assert sight.line(12.0) == ""
