"""What the brain knows of what Hex sees: the latest picture of each source and the latest
moment, fresh only.

The perception actor sends each source's picture a few times a second at most
(``vision.observation``, volatile) and each change worth remembering as a durable
``vision.moment`` (someone arrived after two hours, left, their mood changed). The prompt gets
one line: each source's picture while it is younger than ``fresh_s``, and the moment while it is
younger than ``moment_fresh_s``. A pause (``perception.switched``) forgets what the paused
sources showed at once: Hex does not talk about what she was asked not to look at. All of it is
kept in the brain's state, so a restart does not forget that someone just came back.
"""

from __future__ import annotations

from actors.brain.config import BrainConfig, BrainState
from schemas import Observation, PerceptionSwitched, VisionMoment


class Sight:
    def __init__(self, state: BrainState, config: BrainConfig) -> None:
        self.state = state
        self.fresh_s = config.observation_fresh_s
        self.moment_fresh_s = config.moment_fresh_s

    def observed(self, event: Observation, now: float) -> None:
        at = event.at or now
        kept = self.state.pictures.get(event.source)
        if kept is None or at >= kept[1]:
            self.state.pictures[event.source] = (event.text, at)
        if at >= self.state.observed_at:  # the latest of any source (status, tests)
            self.state.observation, self.state.observed_at = event.text, at

    def moment(self, event: VisionMoment) -> None:
        if event.at >= self.state.moment_at:
            self.state.moment = event.text
            self.state.moment_at = event.at
            self.state.moment_source = event.source

    def switched(self, event: PerceptionSwitched) -> None:
        if event.error:
            return
        paused = set(event.paused)
        s = self.state
        for source in list(s.pictures):
            if "*" in paused or source in paused:
                del s.pictures[source]
        if s.moment and ("*" in paused or s.moment_source in paused):
            s.moment, s.moment_at = "", 0.0
        if "*" in paused:
            s.observation, s.observed_at = "", 0.0

    def line(self, now: float) -> str:
        """The prompt's line about what Hex sees, or "" when nothing is fresh."""
        s = self.state
        fresh = sorted(
            (name, text) for name, (text, at) in s.pictures.items() if now - at < self.fresh_s
        )
        parts = [text if len(fresh) == 1 else f"{name}: {text}" for name, text in fresh]
        if s.moment and now - s.moment_at < self.moment_fresh_s:
            parts.append(s.moment)
        return "; ".join(parts)
