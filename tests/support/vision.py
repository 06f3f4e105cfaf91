"""Test footage from real photographs: a desk, a person (or two), a cat, the lights going off.

Frames are 640x480 BGR, made from images that ship in scikit-image: ``coffee()`` (a cup on a
table: the empty desk), ``astronaut()`` (Eileen Collins: the person, pasted at different sizes,
places, mirrored, darker or brighter), ``chelsea()`` (a cat's face: a face that is not a
person's). Every frame gets sensor noise; videos are MJPG (compression artefacts included), so
no two frames are the same, as with a real camera.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

W, H = 640, 480


def _bgr(rgb: Any) -> Any:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def photo(name: str) -> Any:
    """One of scikit-image's sample photographs (``astronaut``, ``coffee``, ``chelsea``), BGR."""
    from skimage import data

    make: Any = getattr(data, name)
    return _bgr(make())


def desk() -> Any:
    import cv2

    return cv2.resize(photo("coffee"), (W, H), interpolation=cv2.INTER_AREA)


def person(scale: float = 0.75, x: float = 0.5, mirror: bool = False, light: float = 1.0) -> Any:
    """The desk with the astronaut in front of it: her portrait ``scale`` of the frame's height,
    centred at ``x`` (a fraction of the width)."""
    import cv2

    frame = desk()
    face = photo("astronaut")
    if mirror:
        face = face[:, ::-1]
    side = int(H * scale)
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    left = int(np.clip(x * W - side / 2, 0, W - side))
    frame[H - side :, left : left + side] = face
    return np.clip(frame.astype(np.float32) * light, 0, 255).astype(np.uint8)


def two_people() -> Any:
    import cv2

    frame = desk()
    face = photo("astronaut")
    side = int(H * 0.55)
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    frame[H - side :, 10 : 10 + side] = small
    frame[H - side :, W - side - 10 : W - 10] = small[:, ::-1]
    return frame


def cat() -> Any:
    import cv2

    frame = desk()
    face = cv2.resize(photo("chelsea"), (360, 240), interpolation=cv2.INTER_AREA)
    frame[H - 240 :, 140:500] = face
    return frame


def dark() -> Any:
    return (desk() * 0.02).astype(np.uint8)


SCENES = {"desk": desk, "person": person, "two": two_people, "cat": cat, "dark": dark}


def noisy(frame: Any, rng: np.random.Generator, sigma: float = 4.0) -> Any:
    noise = rng.normal(0, sigma, frame.shape)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Shot:
    scene: str  # a key of SCENES
    seconds: float
    sway: bool = True  # the person moves a little (a real person is never still)


def frames(shots: Sequence[Shot], fps: float, seed: int = 0) -> Iterator[Any]:
    rng = np.random.default_rng(seed)
    for shot in shots:
        n = round(shot.seconds * fps)
        still = SCENES[shot.scene]() if shot.scene != "person" else None
        for i in range(n):
            if still is None:
                x = 0.5 + (0.04 * np.sin(i / fps * 1.3) if shot.sway else 0.0)
                frame = person(scale=0.78, x=x)
            else:
                frame = still
            yield noisy(frame, rng)


def write_video(
    path: Path,
    shots: Sequence[Shot],
    fps: float = 10.0,
    seed: int = 0,
    size: tuple[int, int] = (W, H),
) -> Path:
    """An MJPG AVI of ``shots`` at ``fps``, ``size`` (width, height) pixels."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in frames(shots, fps, seed):
            if size != (W, H):
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
            writer.write(frame)
    finally:
        writer.release()
    return path
