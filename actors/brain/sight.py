"""What the brain knows of what Hex sees: the latest picture and the latest moment, fresh only.

The perception actor sends the picture a few times a second at most (``vision.observation``,
volatile) and each change worth remembering as a durable ``vision.moment`` (someone arrived
after two hours, left, their mood changed). The prompt gets one line: the picture while it is
younger than ``fresh_s``, and the moment while it is younger than ``moment_fresh_s``. Both are
kept in the brain's state, so a restart does not forget that someone just came back.
"""

from __future__ import annotations

from actors.brain.config import BrainConfig, BrainState
from schemas import Observation, VisionMoment


class Sight:
    def __init__(self, state: BrainState, config: BrainConfig) -> None:
        self.state = state
        self.fresh_s = config.observation_fresh_s
        self.moment_fresh_s = config.moment_fresh_s

    def observed(self, event: Observation, now: float) -> None:
        at = event.at or now
        if at >= self.state.observed_at:
            self.state.observation = event.text
            self.state.observed_at = at

    def moment(self, event: VisionMoment) -> None:
        if event.at >= self.state.moment_at:
            self.state.moment = event.text
            self.state.moment_at = event.at

    def line(self, now: float) -> str:
        """The prompt's line about what Hex sees, or "" when nothing is fresh."""
        s = self.state
        parts = []
        if s.observation and now - s.observed_at < self.fresh_s:
            parts.append(s.observation)
        if s.moment and now - s.moment_at < self.moment_fresh_s:
            parts.append(s.moment)
        return "; ".join(parts)
