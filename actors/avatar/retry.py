"""How long an avatar output waits before it tries a failed receiver again: doubling, capped."""

from __future__ import annotations


class Backoff:
    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.current = initial_s

    def next(self) -> float:
        """The wait before the next try; each call doubles the one after, up to ``max_s``."""
        delay = self.current
        self.current = min(self.max_s, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.initial_s
