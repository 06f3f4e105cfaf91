"""A source's capture thread and its one-frame slot.

The slot (:class:`LatestFrame`) keeps only the newest frame: a slow analysis drops frames (and
counts them), it never queues them. Frames come in at the source's rate, but only those the
analysis will want (from ``want_at`` on) are made into pictures: the rest pass by unconverted.
A :class:`Capture` owns one source's thread: it opens the source, reads it at its own pace,
retries with backoff when it fails to open or stops giving frames, and closes it at once when
paused, so the device is released (and nothing read as the pause came is kept). Its ``state``
and ``detail`` are what ``hexbus status`` and the indicator show.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from actors.perception.sources import SKIPPED, Frame, FrameSource, SourceError

__all__ = ["DARK_LEVEL", "Capture", "LatestFrame", "lower_priority"]

DARK_LEVEL = 12.0  # mean brightness (0..255) under which a frame is dark
DARK_S = 1.0  # dark this long: the source says so


class LatestFrame:
    """A one-frame slot: :meth:`put` replaces what is there, read or not."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._at = 0.0
        self.seq = 0
        self._taken = 0
        self.dropped = 0  # frames replaced before anyone took them

    def skip(self) -> None:
        """A frame went by that nobody was going to look at: dropped, like a replaced one."""
        with self._cond:
            self.dropped += 1

    def put(self, frame: Frame, at: float) -> None:
        with self._cond:
            if self._frame is not None and self._taken < self.seq:
                self.dropped += 1
            self._frame, self._at = frame, at
            self.seq += 1
            self._cond.notify_all()

    def take(self, after: int, timeout: float) -> tuple[Frame, float, int] | None:
        """The newest frame if it is newer than sequence ``after`` (waiting up to ``timeout``)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.seq > after, timeout):
                return None
            self._taken = self.seq
            if self._frame is None:  # cleared (a pause, an unplug): nothing to look at
                return None
            return self._frame, self._at, self.seq

    def clear(self) -> None:
        """Forget the frame (a pause: nothing seen before it may be looked at after it)."""
        with self._cond:
            self._frame = None
            self._taken = self.seq


def lower_priority(nice: int) -> None:
    """Make the calling thread (not its process: Linux schedules threads) yield to everything
    else: ``SCHED_IDLE`` (it runs on what no one else wants, and any other thread preempts it at
    once; the threads it starts, such as a decoder's, inherit it) where the kernel has it, else
    ``nice`` steps kinder. ``nice <= 0``: leave it as it is. Where neither is possible, nothing."""
    if nice <= 0:
        return
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except (AttributeError, OSError):
        pass


@dataclass
class Capture:
    """One source's capture thread: open, read into the slot, retry with backoff, pause."""

    source: FrameSource
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    slot: LatestFrame = field(default_factory=LatestFrame)
    state: Literal["starting", "running", "paused", "retrying", "ended", "dark"] = "starting"
    detail: str = ""
    frames_in: int = 0
    retry_at: float = 0.0  # monotonic time of the next try, while retrying
    window: str = ""
    paused: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # pause, resume or stop
    opened: bool = False  # the device or file is held now
    released: threading.Event = field(default_factory=threading.Event)  # set while not held
    nice: int = 10  # this thread's niceness: decoding frames yields to the responder
    # Monotonic time from which the next frame is wanted (the analysis sets it when it takes
    # one): frames before it pass by unconverted, so a 30 fps source analysed 5 times a second
    # makes about 5 pictures a second, not 30 (memory traffic the responder would share).
    want_at: float = 0.0
    _dark_since: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.released.set()

    def pause(self) -> None:
        self.paused.set()
        self.wake.set()

    def resume(self) -> None:
        self.paused.clear()
        self.wake.set()

    def run(self, stop: threading.Event) -> None:
        """The thread's body, until ``stop`` is set."""
        lower_priority(self.nice)
        self._stop = stop
        self.source.pause_for = self._interrupted
        backoff = self.backoff_initial_s
        while not stop.is_set():
            if self.paused.is_set():
                self._set("paused", "")
                self._wait(stop, None)
                continue
            try:
                self.released.clear()
                self.opened = True  # from the first call: a half-open device is closed too
                self.source.open()
                if self.paused.is_set():  # paused while it opened: release before any frame
                    self._close()
                    continue
                ended = self._read(stop)
            except Exception as exc:  # whatever it is, the device is released and retried
                self._close()
                why = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
                backoff = self._retry(stop, why, backoff)
                continue
            self._close()
            backoff = self.backoff_initial_s
            if ended:
                self._set("ended", "the file ended")
                self.wake.clear()  # a pause and resume from before the end is not a replay
                self._wait(stop, None)  # until a pause and resume (which plays it again) or stop
        self._close()

    def _interrupted(self, seconds: float) -> bool:
        """A source's wait for its next frame, cut short by a pause or a stop."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.paused.is_set() or self._stop.is_set():
                return True
            time.sleep(min(left, 0.05))
        return self.paused.is_set() or self._stop.is_set()

    def _read(self, stop: threading.Event) -> bool:
        """Read frames until stopped or paused (False) or the file ended (True)."""
        self._set("running", "")
        while not stop.is_set() and not self.paused.is_set():
            frame = self.source.read(time.monotonic() >= self.want_at)
            if self.paused.is_set() or stop.is_set():
                return False  # read as the pause came: never put in the slot
            if frame is None:
                return True
            if frame is SKIPPED:
                self.frames_in += 1
                self.slot.skip()
                continue
            now = time.time()
            self.frames_in += 1
            self.window = self.source.window()
            self._watch_dark(frame, time.monotonic())
            self.slot.put(frame, now)
        return False

    def _watch_dark(self, frame: Frame, now: float) -> None:
        if self.frames_in % 5:  # a mean every fifth frame is plenty
            return
        dark = float(frame[::8, ::8].mean()) < DARK_LEVEL
        if not dark:
            self._dark_since = None
            if self.state == "dark":
                self._set("running", "")
            return
        if self._dark_since is None:
            self._dark_since = now
        elif now - self._dark_since >= DARK_S and self.state == "running":
            self._set("dark", "frames are black: lens covered or lights off?")

    def _retry(self, stop: threading.Event, why: str, backoff: float) -> float:
        self.retry_at = time.monotonic() + backoff
        self._set("retrying", why)
        self._wait(stop, backoff)
        return min(self.backoff_max_s, backoff * 2)

    def _wait(self, stop: threading.Event, seconds: float | None) -> None:
        """Sleep until ``seconds`` pass or a pause, resume or stop wakes the thread."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not stop.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            if self.wake.wait(0.2 if left is None else min(0.2, left)):
                self.wake.clear()
                return

    def _close(self) -> None:
        if self.opened:
            self.source.close()
            self.opened = False
        self.slot.clear()
        self.released.set()

    def wait_released(self, timeout: float) -> bool:
        """Block until the source is closed (after :meth:`pause`): whether it was in time."""
        return self.released.wait(timeout)

    def _set(self, state: Any, detail: str) -> None:
        self.state, self.detail = state, detail
