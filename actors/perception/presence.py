"""Presence and mood with hysteresis: what the analyses of one source add up to, over time.

A single analysis is noisy (a face missed in one frame, a frown for a blink). A person has
*arrived* once faces were seen for ``arrive_s`` with no gap longer than ``gap_s``, and has
*left* once none was seen for ``leave_s``; the dominant emotion is a decaying average of the
faces' probabilities, and a new one counts once it has led for ``hold_s``. Each change is a
:class:`Change` (at most one of each kind per call); everything else is the steady picture.
Times are the frames' capture times (seconds), so a paused or slow source never fakes a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas import EMOTIONS

MAX_STEP_S = 5.0  # readings further apart than this say nothing about the analysis rate


@dataclass(frozen=True)
class Change:
    change: Literal["arrived", "left", "emotion"]
    at: float
    away_s: float = 0.0  # arrived: how long nobody was there (0: never seen before)
    emotion: str = ""
    previous: str = ""


@dataclass
class Presence:
    """One source's presence and held emotion."""

    arrive_s: float = 1.0
    leave_s: float = 8.0
    gap_s: float = 0.6  # a miss shorter than this inside an arrival does not restart it
    # (or than 3.5 readings: two misses in a row, at whatever rate the governor allows)
    hold_s: float = 3.0
    half_life_s: float = 1.5  # of the emotion average
    present: bool = False
    emotion: str = ""  # the held dominant emotion ("" while nobody is there)
    last_seen: float | None = None  # the last time a face was seen (capture time)
    left_at: float | None = None  # when the last person left (for away_s)
    _since: float | None = None  # the run of sightings that may become an arrival
    _average: list[float] = field(default_factory=lambda: [0.0] * len(EMOTIONS))
    _averaged_at: float | None = None
    _leader: str = ""
    _leader_since: float = 0.0
    _last_at: float | None = None
    _interval: float = 0.0  # between readings, smoothed

    def see(self, at: float, faces: int, emotions: list[tuple[float, ...]]) -> list[Change]:
        """One analysis at capture time ``at``: how many faces, and the emotion probabilities of
        each face that has them. Returns the changes it completes."""
        changes: list[Change] = []
        step = at - self._last_at if self._last_at is not None else 0.0
        if 0 < step <= MAX_STEP_S:  # a longer one is a pause, not the rate
            self._interval = step if not self._interval else 0.7 * self._interval + 0.3 * step
        self._last_at = at
        gap = max(self.gap_s, 3.5 * self._interval)
        if faces:
            if self.last_seen is None or at - self.last_seen > gap:
                self._since = at  # a new run of sightings
            self.last_seen = at
            if not self.present and self._since is not None and at - self._since >= self.arrive_s:
                self.present = True
                away = at - self.left_at if self.left_at is not None else 0.0
                changes.append(Change("arrived", at, away_s=max(0.0, away)))
        elif self.present and self.last_seen is not None and at - self.last_seen >= self.leave_s:
            self.present = False
            self.left_at = self.last_seen
            previous, self.emotion = self.emotion, ""
            self._reset_mood()
            changes.append(Change("left", at, previous=previous))
        if self.present:
            mood = self._mood(at, emotions)
            if mood is not None:
                changes.append(mood)
        return changes

    def _mood(self, at: float, emotions: list[tuple[float, ...]]) -> Change | None:
        readings = [e for e in emotions if len(e) == len(EMOTIONS)]
        if not readings:
            return None
        mean = [sum(values) / len(readings) for values in zip(*readings, strict=True)]
        if self._averaged_at is None:
            self._average = mean
        else:
            keep = 0.5 ** (max(0.0, at - self._averaged_at) / self.half_life_s)
            self._average = [
                keep * a + (1 - keep) * m for a, m in zip(self._average, mean, strict=True)
            ]
        self._averaged_at = at
        leader = EMOTIONS[max(range(len(EMOTIONS)), key=self._average.__getitem__)]
        if leader != self._leader:
            self._leader, self._leader_since = leader, at
        if leader != self.emotion and at - self._leader_since >= self.hold_s:
            previous, self.emotion = self.emotion, leader
            return Change("emotion", at, emotion=leader, previous=previous)
        return None

    def _reset_mood(self) -> None:
        self._average = [0.0] * len(EMOTIONS)
        self._averaged_at = None
        self._leader = ""

    def confidence(self) -> float:
        """How sure the held emotion is: its share of the average (0 when none is held)."""
        if not self.emotion or self._averaged_at is None:
            return 0.0
        total = sum(self._average) or 1.0
        return round(self._average[EMOTIONS.index(self.emotion)] / total, 3)
