"""Perception events (the perception actor's issue fills in frames; the brain reads observations)."""

from __future__ import annotations

from typing import Literal

from schemas.base import Event


class Observation(Event, frozen=True, kw_only=True, tag="vision.observation"):
    """What Hex sees right now, in words; the brain uses the latest one while it is fresh."""

    text: str
    source: Literal["webcam", "screen"] = "webcam"
    at: float = 0.0  # unix seconds it was seen
    emotion: str = ""
    people: int = 0
