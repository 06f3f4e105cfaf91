"""Perception events: what Hex sees (observations, moments, previews) and the owner's switch.

``vision.observation`` is the live picture (volatile, a few a second at most: only the latest
matters); ``vision.moment`` is a change worth remembering (a person arrived or left, their mood
changed and held), durable so the brain never misses one. ``vision.frame`` is a small JPEG
preview in the blob, sent only while someone holds a ``vision.preview`` lease. Capture stops at
once on ``perception.pause`` and resumes on ``perception.resume`` (each reported by a durable
``perception.switched``); ``perception.state`` says which, for any interface's indicator.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import Event

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


class Face(msgspec.Struct, frozen=True, kw_only=True):
    """One face in a frame: its box (fractions of the frame), whether it looks at the camera,
    and the emotion probabilities in :data:`EMOTIONS` order (empty when emotion is off)."""

    x: float
    y: float
    w: float
    h: float
    attentive: bool = True  # a frontal face: looking at the screen, more or less
    confidence: float = 0.0  # the detector's, 0..1
    emotions: tuple[float, ...] = ()
    emotion: str = ""  # the most likely one


class Observation(Event, frozen=True, kw_only=True, tag="vision.observation"):
    """What Hex sees right now, in words and figures; the brain uses the latest one while it
    is fresh."""

    text: str
    source: str = "webcam"  # the source's name in the perception config
    kind: Literal["camera", "screen", "file"] = "camera"
    at: float = 0.0  # unix seconds it was seen
    emotion: str = ""  # the dominant emotion, held (not one frame's)
    people: int = 0
    present: bool = False  # after hysteresis: someone is there
    attention: bool = False  # someone faces the screen
    faces: tuple[Face, ...] = ()
    scene: Literal["still", "motion", "changed", "dark"] = "still"
    motion: float = 0.0  # mean absolute change against the last analysed frame, 0..1
    window: str = ""  # a screen source's active window title, where the platform says
    confidence: float = 0.0  # of the face and emotion reading, 0..1


class VisionMoment(Event, frozen=True, kw_only=True, tag="vision.moment"):
    """A change worth remembering: someone arrived (after ``away_s`` without anyone), left, or
    their dominant emotion changed and held."""

    change: Literal["arrived", "left", "emotion"]
    source: str
    at: float
    text: str  # in words, for the prompt: "they just came back after 2 hours"
    away_s: float = 0.0  # arrived: how long nobody was there (0: never seen before)
    emotion: str = ""
    previous: str = ""


class VisionFrame(Event, frozen=True, kw_only=True, tag="vision.frame"):
    """A JPEG preview (in the blob) of a source, while someone holds a preview lease."""

    source: str
    width: int
    height: int
    at: float


class PreviewLease(Event, frozen=True, kw_only=True, tag="vision.preview"):
    """Send previews of ``source`` ("" for every source) for ``seconds``; renew to keep them."""

    source: str = ""
    seconds: float = 10.0
    fps: float = 2.0


class PerceptionPause(Event, frozen=True, kw_only=True, tag="perception.pause"):
    """Stop capturing now and release the devices (every source, or the one named)."""

    source: str = ""
    by: str = ""


class PerceptionResume(Event, frozen=True, kw_only=True, tag="perception.resume"):
    source: str = ""
    by: str = ""


class PerceptionSwitched(Event, frozen=True, kw_only=True, tag="perception.switched"):
    """The report of a pause or resume: what is paused now, and who asked."""

    paused: tuple[str, ...]  # source names paused ("*": every source)
    by: str = ""
    error: str = ""  # why nothing changed (a source name that is not configured)


class PerceptionStatus(Event, frozen=True, kw_only=True, tag="perception.status"):
    """Ask for a :class:`PerceptionState` now (``hexbus perception status``)."""


class SourceState(msgspec.Struct, frozen=True, kw_only=True):
    """One source's condition, as the indicator shows it."""

    name: str
    kind: Literal["camera", "screen", "file"]
    state: Literal["starting", "running", "paused", "retrying", "ended", "dark"]
    detail: str = ""  # why it is retrying, what it is
    frames_in: int = 0  # captured since the actor started
    frames_analysed: int = 0
    frames_dropped: int = 0  # captured but never analysed (the newest won)
    retry_in_s: float = 0.0


class PerceptionState(Event, frozen=True, kw_only=True, tag="perception.state"):
    """Whether Hex is looking, per source; published on every change and every few seconds."""

    paused: bool
    sources: tuple[SourceState, ...] = ()
    rate_hz: float = 0.0  # analyses a second now
    governed: str = ""  # why the rate is below the configured one ("cpu 93%")
    emotion: bool = True  # emotion model loaded
