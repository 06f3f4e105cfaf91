"""Where frames come from: a camera, the screen, a video file or a folder of images.

Each source opens, gives its next frame at its own pace (a camera's, a file's frame rate, a
folder's ``fps``), and closes; it raises :class:`SourceError` with one line when it cannot give
frames now (not plugged in, unplugged mid-stream, a truncated file, no display), and the
capture (actors/perception/capture.py) retries it. OpenCV and mss are imported when a source
opens, so this module loads without the ``perception`` extra.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

__all__ = [
    "IMAGE_SUFFIXES",
    "SKIPPED",
    "Frame",
    "FrameSource",
    "SourceError",
    "SourceSpec",
    "make_source",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
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
SKIPPED: Any = object()  # read(want=False): a frame passed by, not made into a picture


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class FrameSource(Protocol):
    name: str
    kind: str
    # How a source waits for its next frame: returns True when woken early (a pause or a stop),
    # and the source then gives no frame. Capture sets it; alone, a source just sleeps.
    pause_for: Callable[[float], bool]

    def open(self) -> None: ...

    def read(self, want: bool = True) -> Frame | None:
        """The next frame (paced at the source's rate); ``None``: a file ended as it should.
        ``want`` False: nobody will look at this one, so move past it without converting it
        (:data:`SKIPPED`): a camera or a video still decodes each frame to keep its place, but
        no picture is made, scaled or copied."""
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
        self.pause_for: Callable[[float], bool] = _sleep

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

    def read(self, want: bool = True) -> Frame | None:
        gone = f"camera {self.spec.device} stopped giving frames (unplugged?)"
        if not self._cap.grab():
            raise SourceError(gone)
        if not want:
            return SKIPPED
        ok, frame = self._cap.retrieve()
        if not ok or frame is None:
            raise SourceError(gone)
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
        self.pause_for: Callable[[float], bool] = _sleep
        self.skipped = 0  # images of a folder that could not be read

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

    def read(self, want: bool = True) -> Frame | None:
        import cv2

        self._next = _pace(self._next, self._interval, self.pause_for)
        if self._next < 0:
            return None  # woken: the capture looks at why
        if self._images:
            for _ in range(len(self._images)):  # an unreadable image is skipped, not a stop
                if self._index >= len(self._images):
                    if not self.spec.loop:
                        return None
                    self._index = 0
                image = self._images[self._index]
                self._index += 1
                if not want:
                    return SKIPPED
                frame = cv2.imread(str(image))
                if frame is not None:
                    return _fit(frame, self.spec.width, self.spec.height)
                self.skipped += 1
            raise SourceError(f"none of the images in {self.path} can be read")
        if self._cap.grab():
            self._index += 1
            return self._picture(want)
        if self._frames and self._index < self._frames * 0.9:
            # It said it had many more (the count is an estimate in some containers): the file
            # was cut short, or vanished, under the reader.
            raise SourceError(
                f"video file {self.path} ended after frame {self._index} of {self._frames}"
            )
        if not self.spec.loop:
            return None
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._index = 0
        if not self._cap.grab():
            raise SourceError(f"video file {self.path} cannot be read from its start again")
        self._index = 1
        return self._picture(want)

    def _picture(self, want: bool) -> Frame:
        """The frame just grabbed, as a picture (or :data:`SKIPPED`)."""
        if not want:
            return SKIPPED
        ok, frame = self._cap.retrieve()
        if not ok or frame is None:
            raise SourceError(f"video file {self.path} has a frame that cannot be decoded")
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
        self.pause_for: Callable[[float], bool] = _sleep

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
            self._mss = (getattr(mss, "MSS", None) or mss.mss)()  # mss 10 renamed it
            self._mss.monitors[self.spec.monitor]  # an unknown monitor fails here
        except Exception as exc:
            self.close()  # each instance holds an X connection: never leak one per retry
            if isinstance(exc, IndexError):
                raise SourceError(f"monitor {self.spec.monitor} does not exist") from None
            raise SourceError(f"screen capture failed: {exc}") from None
        self._next = time.monotonic()

    def read(self, want: bool = True) -> Frame | None:
        import numpy as np

        self._next = _pace(self._next, self._interval, self.pause_for)
        if self._next < 0:
            return None
        if not want:
            return SKIPPED  # a screen has no stream to keep up with: nothing is grabbed
        try:
            shot = self._mss.grab(self._mss.monitors[self.spec.monitor])
        except Exception as exc:  # mss says little when the X server went away
            display = os.environ.get("DISPLAY", "")
            why = str(exc) or type(exc).__name__
            raise SourceError(f"screen capture on {display} failed: {why}") from None
        frame = np.ascontiguousarray(np.asarray(shot)[:, :, :3])
        return _fit(frame, self.spec.width, self.spec.height)

    def close(self) -> None:
        if self._mss is not None:
            try:
                self._mss.close()
            except Exception:  # the X server is gone: so is the connection
                pass
            self._mss = None

    def window(self) -> str:
        now = time.monotonic()
        if now - self._title_at >= WINDOW_EVERY_S:
            self._title_at = now
            self._title = active_window_title()
        return self._title


def _pace(next_at: float, interval: float, pause_for: Callable[[float], bool]) -> float:
    """Wait for the next frame's time; the time after it, or -1 when woken early."""
    next_at += interval
    delay = next_at - time.monotonic()
    if delay > 0:
        if pause_for(delay):
            return -1.0
    elif delay < -1.0:
        next_at = time.monotonic()  # far behind (a stall): do not race to catch up
    return next_at


def active_window_title() -> str:
    """The focused X11 window's title (``xprop``), or "" where it cannot be known."""
    xprop = shutil.which("xprop")
    if not xprop or not os.environ.get("DISPLAY"):
        return ""
    try:
        root = subprocess.run(
            [xprop, "-root", "_NET_ACTIVE_WINDOW"], capture_output=True, text=True, timeout=1
        ).stdout
        window = int(root.rsplit(" ", 1)[-1].strip(), 0)  # "# 0x2a00003", or a plain number
        if window == 0:
            return ""
        named = subprocess.run(
            [xprop, "-id", hex(window), "_NET_WM_NAME", "WM_NAME"],
            capture_output=True,
            text=True,
            timeout=1,
        ).stdout
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""
    for line in named.splitlines():  # the UTF-8 name where the window sets one, else the old one
        _, found, value = line.partition(" = ")
        if found:
            return value.strip().strip('"')[:200]
    return ""


def make_source(spec: SourceSpec, base: Path) -> FrameSource:
    if spec.kind == "camera":
        return CameraSource(spec)
    if spec.kind == "screen":
        return ScreenSource(spec)
    return FileSource(spec, base)
