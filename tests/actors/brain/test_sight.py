"""What the brain's prompt says of what Hex sees: fresh pictures and recent moments only."""

from __future__ import annotations

from actors.brain.config import BrainConfig, BrainState
from actors.brain.sight import Sight
from schemas import Observation, VisionMoment


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
