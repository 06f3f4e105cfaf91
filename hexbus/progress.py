"""Progress of long work a command waits on (an import, an upload): how much is done, the
rate, and the time left.

On a terminal one line is redrawn in place (at most ten times a second); piped, a plain line
is written every ``every_s`` seconds and at the end, so a log shows the work moving without
a line per item.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR = 24  # characters of the bar


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """``advance(n)`` as work completes; ``done()`` once at the end."""

    def __init__(
        self,
        total: int,
        unit: str,
        *,
        what: str = "",
        out: TextIO | None = None,
        every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(0, total)
        self.unit = unit
        self.what = what
        self.out = out if out is not None else sys.stderr
        self.terminal = self.out.isatty()
        self.every_s = every_s
        self.clock = clock
        self.count = 0
        self.started = clock()
        self.shown = float("-inf")  # when the last line was drawn
        self.width = 0  # of the line drawn in place

    def line(self) -> str:
        """The progress as one line: done of total, percent, rate, time left."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.count / elapsed
        share = self.count / self.total if self.total else 1.0
        left = (self.total - self.count) / rate if rate > 0 else 0.0
        head = f"{self.what} " if self.what else ""
        text = (
            f"{head}{self.count}/{self.total} {self.unit} ({share:.0%}), {rate:.1f} {self.unit}/s"
        )
        if self.count < self.total and rate > 0:
            text += f", about {_duration(left)} left"
        if self.terminal:
            filled = round(BAR * share)
            text = f"[{'#' * filled}{'.' * (BAR - filled)}] {text}"
        return text

    def advance(self, n: int = 1) -> None:
        self.count = min(self.total, self.count + n) if self.total else self.count + n
        now = self.clock()
        if now - self.shown >= (0.1 if self.terminal else self.every_s):
            self._show(now)

    def done(self) -> None:
        """The last line (the terminal's own line ended, so what follows starts afresh)."""
        self._show(self.clock())
        if self.terminal:
            self.out.write("\n")
            self.out.flush()

    def _show(self, now: float) -> None:
        self.shown = now
        text = self.line()
        if self.terminal:
            self.out.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()
