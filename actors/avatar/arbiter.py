"""One face from many wishes: the arbiter turns Hex's emotion, what she sees, her speech and her idle
life into a single stream of expression frames.

Each part of the face is a channel with one owner at a time:

- **expression**: claims with a priority and a hold time (the reply's emotion outranks a mirrored
  look of the person); the strongest live claim shows, and fades back to neutral over its last
  ``fade_s``. A newer claim of the same source replaces the older one.
- **mouth**: reserved for lip-sync (:mod:`actors.avatar.lipsync`); nothing else can set it.
- **eyes and head**: idle life (blinks every few seconds, a slow sway) plus where to look: at the
  person while perception sees them, back to the middle when that goes stale.

Everything is a function of the time passed in, so the face is the same whether it is computed
live or replayed in a test.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class Frame:
    """The face at one moment. Angles in degrees; gaze and weights in -1..1 / 0..1."""

    at: float
    expression: str = NEUTRAL
    weight: float = 0.0  # how strongly the expression shows
    mouth: float = 0.0
    eyes_open: float = 1.0
    yaw: float = 0.0  # head turn, + to her left
    pitch: float = 0.0  # head nod, + up
    roll: float = 0.0
    gaze_x: float = 0.0  # where her eyes look, + to her left
    gaze_y: float = 0.0  # + up


@dataclass(frozen=True, slots=True)
class Claim:
    source: str
    expression: str
    priority: int
    since: float
    until: float
    fade_s: float
    order: int  # claims made at the same moment with the same priority: the later one shows

    def weight(self, now: float) -> float:
        if now >= self.until or now < self.since:
            return 0.0
        left = self.until - now
        return 1.0 if left >= self.fade_s or self.fade_s <= 0 else left / self.fade_s


class Blinks:
    """Blinks at random intervals (seeded: the same seed blinks the same way), sometimes twice."""

    CLOSE_S = 0.06
    OPEN_S = 0.10

    def __init__(self, seed: int = 0, every_s: tuple[float, float] = (2.0, 6.0)) -> None:
        self.rng = random.Random(seed)
        self.every_s = every_s
        self.next_at: float | None = None
        self.blinks: list[float] = []  # start times of the blinks scheduled

    def eyes_open(self, now: float) -> float:
        if self.next_at is None:
            self.next_at = now + self.rng.uniform(*self.every_s)
        while self.next_at <= now:
            self.blinks.append(self.next_at)
            if self.rng.random() < 0.15:  # a double blink
                self.blinks.append(self.next_at + 0.25)
            self.next_at += self.rng.uniform(*self.every_s)
        length = self.CLOSE_S + self.OPEN_S
        self.blinks = [b for b in self.blinks if b + length > now - 1.0]
        closed = 0.0
        for start in self.blinks:
            t = now - start
            if 0 <= t < self.CLOSE_S:
                closed = max(closed, t / self.CLOSE_S)
            elif self.CLOSE_S <= t < length:
                closed = max(closed, 1.0 - (t - self.CLOSE_S) / self.OPEN_S)
        return 1.0 - closed


def gaze_at(
    x: float, y: float, w: float, h: float, *, mirrored: bool = False
) -> tuple[float, float]:
    """Where to look (her left +, up +; -1..1) at a face with this box (fractions of a camera's
    picture). The camera faces the person as she does, so the picture's left is her left,
    unless the camera mirrors its picture."""
    across = (0.5 - (x + w / 2)) * 2
    return (-across if mirrored else across), (0.5 - (y + h / 2)) * 2


def sway(now: float, speaking: bool) -> tuple[float, float, float]:
    """A slow, never-repeating head motion (sums of incommensurate sines), livelier in speech."""
    k = 1.6 if speaking else 1.0
    yaw = k * (2.0 * math.sin(now * 0.31) + 1.0 * math.sin(now * 0.71 + 1.3))
    pitch = k * (1.2 * math.sin(now * 0.43 + 0.4) + 0.6 * math.sin(now * 1.13 + 2.1))
    roll = k * (0.8 * math.sin(now * 0.27 + 2.7))
    return yaw, pitch, roll


@dataclass(frozen=True, slots=True)
class Look:
    x: float  # -1..1, + to her left
    y: float
    at: float


class Arbiter:
    """Claims, looks and idle life in; one :class:`Frame` per call out."""

    def __init__(self, *, look_fresh_s: float = 3.0, blink_seed: int = 0) -> None:
        self.claims: dict[str, Claim] = {}
        self.made = 0
        self.look: Look | None = None
        self.look_fresh_s = look_fresh_s
        self.blinks = Blinks(blink_seed)

    def claim(
        self,
        source: str,
        expression: str,
        *,
        priority: int,
        hold_s: float,
        now: float,
        fade_s: float = 1.0,
    ) -> None:
        """``source`` wants ``expression`` shown from ``now`` for ``hold_s`` (its last ``fade_s``
        fading out). A neutral claim withdraws the source's wish."""
        if expression == NEUTRAL or hold_s <= 0:
            self.claims.pop(source, None)
            return
        self.made += 1
        self.claims[source] = Claim(
            source, expression, priority, now, now + hold_s, min(fade_s, hold_s), self.made
        )

    def look_at(self, x: float, y: float, now: float) -> None:
        self.look = Look(max(-1.0, min(1.0, x)), max(-1.0, min(1.0, y)), now)

    def expression(self, now: float) -> tuple[str, float]:
        live = [c for c in self.claims.values() if c.weight(now) > 0]
        for source in [s for s, c in self.claims.items() if now >= c.until]:
            del self.claims[source]
        if not live:
            return NEUTRAL, 0.0
        best = max(live, key=lambda c: (c.priority, c.since, c.order))
        return best.expression, best.weight(now)

    def frame(self, now: float, mouth: float, speaking: bool = False) -> Frame:
        """The face at ``now``; ``mouth`` comes from lip-sync and is never overridden."""
        expression, weight = self.expression(now)
        yaw, pitch, roll = sway(now, speaking)
        gaze_x = gaze_y = 0.0
        look = self.look
        if look is not None and now - look.at <= self.look_fresh_s:
            # Eyes go to the person; the head follows part of the way.
            gaze_x, gaze_y = look.x, look.y
            yaw += 12.0 * look.x
            pitch += 6.0 * look.y
        return Frame(
            at=now,
            expression=expression,
            weight=round(weight, 4),
            mouth=mouth,
            eyes_open=self.blinks.eyes_open(now),
            yaw=yaw,
            pitch=pitch,
            roll=roll,
            gaze_x=gaze_x,
            gaze_y=gaze_y,
        )
