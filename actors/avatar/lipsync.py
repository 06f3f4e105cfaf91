"""The mouth: how open it is at a moment, from the speech audio that plays then.

TTS publishes a phrase's chunks in a burst, well before they are heard; a player (Discord's, the
page's) plays what it gets back to back from the moment it gets it. So each chunk is put on its
channel's playback timeline the same way (after the chunk before it, never before it arrives,
plus the output's latency) and the mouth at time ``t`` is the openness of the chunk playing at
``t``: mouth frames follow the audio as heard, not as synthesised. A barge-in drops what is
still to play, so the mouth shuts on the next frame.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

SILENT_DB = -50.0  # at or below this RMS (dBFS), the mouth is closed
OPEN_DB = -14.0  # at or above this, wide open
STOPPED_KEPT = 256


def rms_of(pcm16: bytes) -> float:
    """The root mean square of little-endian PCM16 samples, 0..1 of full scale."""
    if len(pcm16) < 2:
        return 0.0
    samples = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(np.square(samples / 32768.0))))


def openness(rms: float, silent_db: float = SILENT_DB, open_db: float = OPEN_DB) -> float:
    """How open a mouth saying audio of this RMS is, 0..1: linear in decibels between
    ``silent_db`` and ``open_db`` (loudness is heard in decibels)."""
    if rms <= 0.0:
        return 0.0
    db = 20.0 * math.log10(rms)
    return min(1.0, max(0.0, (db - silent_db) / (open_db - silent_db)))


@dataclass(slots=True)
class Piece:
    start: float  # when it plays, on the clock the caller passes (monotonic seconds)
    end: float
    mouth: float
    reply_to: str


@dataclass
class Playback:
    """One channel's audio as it will be heard: pieces back to back, oldest first."""

    pieces: deque[Piece] = field(default_factory=deque)
    until: float = 0.0  # when what is queued has all played


class Lipsync:
    """Mouth openness over time for every channel Hex speaks in; the loudest channel wins."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        silent_db: float = SILENT_DB,
        open_db: float = OPEN_DB,
    ) -> None:
        if not silent_db < open_db:
            raise ValueError(f"silent_db ({silent_db}) must be below open_db ({open_db})")
        self.latency_s = latency_s
        self.silent_db = silent_db
        self.open_db = open_db
        self.voices: dict[str, Playback] = {}
        # Replies stopped by a barge-in (the latest STOPPED_KEPT): their chunks still on the way
        # are dropped, as the players drop them, and never reopen the mouth.
        self.stopped: OrderedDict[tuple[str, str], None] = OrderedDict()

    def heard(
        self, channel: str, reply_to: str, pcm16: bytes, rate: int, now: float
    ) -> tuple[float, float] | None:
        """Schedule a chunk that arrived at ``now``; returns when it plays (start, end), or
        None for a chunk of a stopped reply."""
        if rate <= 0:
            raise ValueError(f"a chunk at {rate} Hz cannot be played")
        if (channel, reply_to) in self.stopped:
            return None
        voice = self.voices.setdefault(channel, Playback())
        seconds = len(pcm16) / 2 / rate
        start = max(now + self.latency_s, voice.until)
        end = start + seconds
        voice.until = end
        if seconds > 0:
            level = openness(rms_of(pcm16), self.silent_db, self.open_db)
            voice.pieces.append(Piece(start, end, level, reply_to))
        return start, end

    def stop(self, channel: str, reply_to: str = "", now: float | None = None) -> int:
        """A barge-in: drop what is still to play in ``channel`` (of ``reply_to`` only, when
        given); returns how many chunks were dropped. The mouth is shut from ``now`` on."""
        voice = self.voices.get(channel)
        stopped = {reply_to} if reply_to else {p.reply_to for p in (voice.pieces if voice else ())}
        for reply in stopped:
            self.stopped[(channel, reply)] = None
        while len(self.stopped) > STOPPED_KEPT:
            self.stopped.popitem(last=False)
        if voice is None:
            return 0
        kept = deque(p for p in voice.pieces if reply_to and p.reply_to != reply_to)
        dropped = len(voice.pieces) - len(kept)
        voice.pieces = kept
        voice.until = max((p.end for p in kept), default=now if now is not None else 0.0)
        return dropped

    def mouth(self, now: float) -> float:
        """How open the mouth is at ``now`` (pieces that have played are forgotten)."""
        level = 0.0
        for voice in self.voices.values():
            pieces = voice.pieces
            while pieces and pieces[0].end <= now:
                pieces.popleft()
            for piece in pieces:
                if piece.start > now:
                    break
                level = max(level, piece.mouth)
        return level

    def speaking(self, now: float) -> bool:
        """Whether any audio is playing or still to play after ``now``."""
        return any(v.pieces and v.pieces[-1].end > now for v in self.voices.values())
