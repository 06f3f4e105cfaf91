"""Where frames come from: a camera, the screen, a video file or a folder of images, each read
by its own capture thread into a one-frame slot.

The slot (:class:`LatestFrame`) keeps only the newest frame: a slow analysis drops frames (and
counts them), it never queues them. A :class:`Capture` owns one source's thread: it opens the
source, reads it at its own pace (a camera's, or a file's frame rate), retries with backoff when
it fails to open or stops giving frames (unplugged, a truncated file, no display), and closes it
at once when paused, so the device is released. Its ``state`` and ``detail`` are what
``hexbus status`` and the indicator show.

OpenCV and mss are imported when a source opens, so this module loads without the
``perception`` extra.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

__all__ = [
    "IMAGE_SUFFIXES",
    "Capture",
    "LatestFrame",
    "SourceError",
    "SourceSpec",
    "make_source",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DARK_LEVEL = 12.0  # mean brightness (0..255) under which a frame is dark
DARK_S = 1.0  # dark this long: the source says so
WINDOW_EVERY_S = 2.0  # how often a screen source asks for the active window's title


class SourceError(Exception):
    """A source that cannot give frames now, in one line (it is retried)."""


class SourceSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One source in ``[[actors.perception.config.sources]]``."""

    name: str = "webcam"
    kind: Literal["camera", "screen", "file"] = "camera"
    device: int | str = 0  # camera: an index (/dev/videoN) or a URL (rtsp://, http://)
    path: str = ""  # file: a video file or a folder of images (relative to supervisor.toml)
    loop: bool = True  # file: start again at the end
    monitor: int = 1  # screen: mss's monitor number (1: the first; 0: all of them)
    width: int = 640  # asked of a camera; other sources are scaled down to fit it
    height: int = 480
    fps: float = 15.0  # asked of a camera; a file plays at its own rate, a folder at this one


Frame = Any  # an OpenCV BGR image (numpy uint8, height x width x 3)


class LatestFrame:
    """A one-frame slot: :meth:`put` replaces what is there, read or not."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._at = 0.0
        self.seq = 0
        self._taken = 0
        self.dropped = 0  # frames replaced before anyone took them

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
            return self._frame, self._at, self.seq

    def clear(self) -> None:
        with self._cond:
            self._frame = None


class FrameSource(Protocol):
    name: str
    kind: str

    def open(self) -> None: ...

    def read(self) -> Frame | None:
        """The next frame (paced at the source's rate); ``None``: a file ended as it should."""
        ...

    def close(self) -> None: ...

    def window(self) -> str: ...


def _fit(frame: Frame, width: int, height: int) -> Frame:
    import cv2

    h, w = frame.shape[:2]
    scale = min(width / w, height / h, 1.0)
    if scale >= 1.0:
        return frame
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class CameraSource:
    kind = "camera"

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self._cap: Any = None

    def open(self) -> None:
        import cv2

        device = self.spec.device
        cap = cv2.VideoCapture(device)
        if not cap.isOpened():
            cap.release()
            where = f"/dev/video{device}" if isinstance(device, int) else str(device)
            raise SourceError(f"camera {where} did not open: is it plugged in and not in use?")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.spec.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.spec.height)
        cap.set(cv2.CAP_PROP_FPS, self.spec.fps)
        self._cap = cap

    def read(self) -> Frame | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceError(f"camera {self.spec.device} stopped giving frames (unplugged?)")
        return _fit(frame, self.spec.width, self.spec.height)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def window(self) -> str:
        return ""


class FileSource:
    """A video file (played at its own frame rate) or a folder of images (at ``fps``)."""

    kind = "file"

    def __init__(self, spec: SourceSpec, base: Path) -> None:
        self.spec = spec
        self.name = spec.name
        self.path = (base / spec.path).resolve() if spec.path else base
        self._cap: Any = None
        self._images: list[Path] = []
        self._index = 0
        self._frames = 0  # frames the container says it has (0: unknown)
        self._interval = 1.0 / max(0.1, spec.fps)
        self._next = 0.0

    def open(self) -> None:
        import cv2

        self._next = time.monotonic()
        self._index = 0
        if self.path.is_dir():
            self._images = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not self._images:
                raise SourceError(f"{self.path} has no images ({', '.join(IMAGE_SUFFIXES)})")
            return
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"video file {self.path} cannot be read (corrupt or not a video)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and 0 < fps <= 240:
            self._interval = 1.0 / fps
        self._frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._cap = cap

    def _pace(self) -> None:
        self._next += self._interval
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            self._next = time.monotonic()  # far behind (a stall): do not race to catch up

    def read(self) -> Frame | None:
        import cv2

        self._pace()
        if self._images:
            if self._index >= len(self._images):
                if not self.spec.loop:
                    return None
                self._index = 0
            image = self._images[self._index]
            self._index += 1
            frame = cv2.imread(str(image))
            if frame is None:
                raise SourceError(f"{image} cannot be read as an image")
            return _fit(frame, self.spec.width, self.spec.height)
        ok, frame = self._cap.read()
        if ok and frame is not None:
            self._index += 1
            return _fit(frame, self.spec.width, self.spec.height)
        if self._frames and self._index < self._frames - 1:
            # It said it had more: the file was cut short (or vanished) under the reader.
            raise SourceError(
                f"video file {self.path} ended after frame {self._index} of {self._frames}"
            )
        if not self.spec.loop:
            return None
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._index = 0
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceError(f"video file {self.path} cannot be read from its start again")
        self._index = 1
        return _fit(frame, self.spec.width, self.spec.height)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._images = []

    def window(self) -> str:
        return ""


class ScreenSource:
    """A monitor through mss (X11; on Wayland only what XWayland shows), with the active
    window's title where ``xprop`` can tell it."""

    kind = "screen"

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self._mss: Any = None
        self._interval = 1.0 / max(0.1, spec.fps)
        self._next = 0.0
        self._title = ""
        self._title_at = 0.0

    def open(self) -> None:
        if not os.environ.get("DISPLAY"):
            wayland = (
                " (Wayland without XWayland is not supported)"
                if os.environ.get("WAYLAND_DISPLAY")
                else ""
            )
            raise SourceError(f"no display to capture: DISPLAY is not set{wayland}")
        try:
            import mss
        except ImportError:
            raise SourceError("screen capture needs mss: pip install 'hex[perception]'") from None
        try:
            self._mss = mss.mss()
            self._mss.monitors[self.spec.monitor]
        except IndexError:
            raise SourceError(f"monitor {self.spec.monitor} does not exist") from None
        except Exception as exc:
            raise SourceError(f"screen capture failed: {exc}") from None
        self._next = time.monotonic()

    def read(self) -> Frame | None:
        import numpy as np

        self._next += self._interval
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            self._next = time.monotonic()
        try:
            shot = self._mss.grab(self._mss.monitors[self.spec.monitor])
        except Exception as exc:
            raise SourceError(f"screen capture failed: {exc}") from None
        frame = np.ascontiguousarray(np.asarray(shot)[:, :, :3])
        return _fit(frame, self.spec.width, self.spec.height)

    def close(self) -> None:
        if self._mss is not None:
            self._mss.close()
            self._mss = None

    def window(self) -> str:
        now = time.monotonic()
        if now - self._title_at >= WINDOW_EVERY_S:
            self._title_at = now
            self._title = active_window_title()
        return self._title


def active_window_title() -> str:
    """The focused X11 window's title (``xprop``), or "" where it cannot be known."""
    xprop = shutil.which("xprop")
    if not xprop or not os.environ.get("DISPLAY"):
        return ""
    try:
        root = subprocess.run(
            [xprop, "-root", "_NET_ACTIVE_WINDOW"], capture_output=True, text=True, timeout=1
        ).stdout
        window = root.rsplit(" ", 1)[-1].strip()
        if not window.startswith("0x") or int(window, 16) == 0:
            return ""
        named = subprocess.run(
            [xprop, "-id", window, "_NET_WM_NAME"], capture_output=True, text=True, timeout=1
        ).stdout
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""
    _, _, value = named.partition(" = ")
    return value.strip().strip('"')[:200]


def make_source(spec: SourceSpec, base: Path) -> FrameSource:
    if spec.kind == "camera":
        return CameraSource(spec)
    if spec.kind == "screen":
        return ScreenSource(spec)
    return FileSource(spec, base)


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
    _dark_since: float | None = None

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
        backoff = self.backoff_initial_s
        while not stop.is_set():
            if self.paused.is_set():
                self._set("paused", "")
                self._wait(stop, None)
                continue
            try:
                self.released.clear()
                self.source.open()
                self.opened = True
            except SourceError as exc:
                self.released.set()
                backoff = self._retry(stop, str(exc), backoff)
                continue
            try:
                ended = self._read(stop)
            except SourceError as exc:
                self._close()
                backoff = self._retry(stop, str(exc), backoff)
                continue
            self._close()
            backoff = self.backoff_initial_s
            if ended:
                self._set("ended", "the file ended")
                self._wait(stop, None)  # until a pause and resume (which plays it again) or stop
        self._close()

    def _read(self, stop: threading.Event) -> bool:
        """Read frames until stopped or paused (False) or the file ended (True)."""
        self._set("running", "")
        while not stop.is_set() and not self.paused.is_set():
            frame = self.source.read()
            if frame is None:
                return True
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
