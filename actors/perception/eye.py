"""One source's view: its capture, its analyzer and its presence, turned into events.

:meth:`Eye.look` takes the newest frame (if there is a new one), analyses it (in the worker the
caller gives) and returns what to publish: the observation, when the picture changed or the
last one is ``observe_every_s`` old, and the moments it completed. Counters say how many frames
came in, were analysed, and were dropped because a newer one replaced them first.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actors.perception.analysis import Analysis, Analyzer
from actors.perception.capture import Capture
from actors.perception.presence import Change, Presence
from actors.perception.words import moment, picture
from schemas import Observation, SourceState, VisionMoment

T = TypeVar("T")
Offload = Callable[..., Awaitable[Any]]


@dataclass
class Eye:
    capture: Capture
    analyzer: Analyzer
    presence: Presence
    observe_every_s: float = 1.0
    analysed: int = 0
    seq: int = 0  # the slot's sequence of the last frame taken
    last: Observation | None = None
    published_at: float = 0.0
    frame: Any = field(default=None, repr=False)  # the last analysed frame (for previews)

    @property
    def name(self) -> str:
        return self.capture.source.name

    @property
    def kind(self) -> str:
        return self.capture.source.kind

    async def look(self, offload: Offload) -> tuple[Observation | None, list[VisionMoment]]:
        taken = self.capture.slot.take(self.seq, 0)
        if taken is None:
            return None, []
        frame, at, self.seq = taken
        analysis: Analysis = await offload(self.analyzer, frame, at)
        if self.capture.paused.is_set():  # paused while it was analysed: it was never seen
            return None, []
        self.analysed += 1
        self.frame = frame
        faces = analysis.faces
        # Faces on a screen (a video call, a film) are not people arriving at the desk.
        changes = (
            []
            if self.kind == "screen"
            else self.presence.see(at, len(faces), [f.emotions for f in faces if f.emotions])
        )
        observation = Observation(
            text=picture(
                kind=self.kind,
                people=len(faces),
                present=self.presence.present,
                attention=any(f.attentive for f in faces),
                emotion=self.presence.emotion,
                scene=analysis.scene,
                window=self.capture.window,
            ),
            source=self.name,
            kind=self.kind,  # type: ignore[arg-type]
            at=at,
            emotion=self.presence.emotion,
            people=len(faces),
            present=self.presence.present,
            attention=any(f.attentive for f in faces),
            faces=faces,
            scene=analysis.scene,  # type: ignore[arg-type]
            motion=analysis.motion,
            window=self.capture.window,
            confidence=self.presence.confidence(),
        )
        moments = [self._moment(c) for c in changes]
        if self._worth(observation, bool(moments), time.monotonic()):
            self.last = observation
            return observation, moments
        return None, moments

    def _worth(self, observation: Observation, moved: bool, now: float) -> bool:
        last = self.last
        changed = (
            last is None
            or moved
            or observation.text != last.text
            or observation.people != last.people
            or observation.scene == "changed"
        )
        if changed or now - self.published_at >= self.observe_every_s:
            self.published_at = now
            return True
        return False

    def _moment(self, change: Change) -> VisionMoment:
        return VisionMoment(
            change=change.change,
            source=self.name,
            at=change.at,
            text=moment(
                change.change,
                away_s=change.away_s,
                emotion=change.emotion,
                previous=change.previous,
            ),
            away_s=round(change.away_s, 1),
            emotion=change.emotion,
            previous=change.previous,
        )

    def state(self, paused: bool) -> SourceState:
        c = self.capture
        return SourceState(
            name=self.name,
            kind=self.kind,  # type: ignore[arg-type]
            state="paused" if paused else c.state,
            detail=c.detail,
            frames_in=c.frames_in,
            frames_analysed=self.analysed,
            frames_dropped=c.slot.dropped,
            retry_in_s=round(max(0.0, c.retry_at - time.monotonic()), 1)
            if c.state == "retrying"
            else 0.0,
        )
