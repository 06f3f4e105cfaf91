"""Capture threads on real sources: a video file, a folder of images, a camera that is not
there, a screen with no display; retry, recovery, the end of a file, and a pause that closes
the file at once."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from actors.perception.capture import Capture, LatestFrame
from actors.perception.sources import SourceSpec, make_source
from tests.support import vision
from tests.support.harness import poll_for


@contextmanager
def running(capture: Capture) -> Iterator[Capture]:
    stop = threading.Event()
    thread = threading.Thread(target=capture.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield capture
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def holds(path: Path) -> bool:
    """Whether this process has ``path`` open."""
    fds = Path("/proc/self/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


def capture_of(spec: SourceSpec, base: Path) -> Capture:
    return Capture(make_source(spec, base), backoff_initial_s=0.2, backoff_max_s=0.4)


def test_the_slot_keeps_only_the_newest_frame_and_counts_the_rest() -> None:
    slot = LatestFrame()
    for i in range(5):
        slot.put(i, float(i))
    assert slot.take(0, 0) == (4, 4.0, 5) and slot.dropped == 4
    assert slot.take(5, 0.01) is None  # nothing newer
    slot.put(5, 5.0)
    assert slot.take(5, 0)[0] == 5 and slot.dropped == 4  # type: ignore[index]


@pytest.mark.slow
def test_a_video_file_plays_loops_and_a_pause_closes_it_at_once(tmp_path: Path) -> None:
    video = vision.write_video(tmp_path / "room.avi", [vision.Shot("desk", 1.0)], fps=10)
    capture = capture_of(SourceSpec(name="room", kind="file", path="room.avi"), tmp_path)
    with running(capture):
        poll_for(lambda: capture.frames_in > 15, 20, what="frames past the end: looped")
        assert capture.state == "running" and holds(video)
        frame, _, _ = capture.slot.take(0, 1)  # type: ignore[misc]
        assert frame.shape == (480, 640, 3)
        capture.pause()
        poll_for(lambda: not holds(video) and capture.state == "paused", 2, what="the file closed")
        assert capture.slot.take(0, 0.3) is None  # nothing seen before the pause is kept
        count = capture.frames_in
        capture.resume()
        poll_for(lambda: capture.frames_in > count and holds(video), 10, what="playing again")


def test_frames_nobody_will_look_at_pass_by_without_becoming_pictures(tmp_path: Path) -> None:
    vision.write_video(tmp_path / "room.avi", [vision.Shot("desk", 1.0)], fps=10)
    capture = capture_of(SourceSpec(name="room", kind="file", path="room.avi"), tmp_path)
    capture.want_at = time.monotonic() + 3600  # the analysis wants nothing for now
    with running(capture):
        poll_for(lambda: capture.frames_in > 5, 20, what="frames going by")
        assert capture.slot.take(0, 0) is None and capture.slot.dropped == capture.frames_in
        capture.want_at = 0.0  # a look is due: the next frame becomes a picture
        frame, at, _ = capture.slot.take(0, 2)  # type: ignore[misc]
        assert frame.shape == (480, 640, 3) and time.time() - at < 1.0


def test_a_file_that_ends_without_looping_says_so(tmp_path: Path) -> None:
    vision.write_video(tmp_path / "clip.avi", [vision.Shot("desk", 0.5)], fps=10)
    capture = capture_of(
        SourceSpec(name="clip", kind="file", path="clip.avi", loop=False), tmp_path
    )
    with running(capture):
        poll_for(lambda: capture.state == "ended", 20, what="the end of the clip")
        assert capture.frames_in == 5 and capture.detail == "the file ended"


@pytest.mark.slow
def test_a_missing_file_is_retried_and_a_cut_one_is_an_unplugged_camera(tmp_path: Path) -> None:
    spec = SourceSpec(name="cam", kind="file", path="feed.avi")
    capture = capture_of(spec, tmp_path)
    with running(capture):
        poll_for(lambda: capture.state == "retrying", 10, what="retrying")
        assert "does not exist" in capture.detail
        # It appears (plugged in), then is cut short mid-stream (unplugged), then is whole again.
        full = vision.write_video(tmp_path / "full.avi", [vision.Shot("desk", 3.0)], fps=10)
        cut = tmp_path / "feed.avi"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
        poll_for(
            lambda: capture.state == "retrying" and "ended after" in capture.detail,
            20,
            what="the cut file noticed",
        )
        assert capture.frames_in > 0
        shutil.copy(full, cut)
        count = capture.frames_in
        poll_for(
            lambda: capture.state == "running" and capture.frames_in > count + 5,
            20,
            what="recovered",
        )


def test_a_folder_of_images_plays_them_in_order(tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "shots"
    folder.mkdir()
    scenes = ["desk", "person", "cat", "dark"]
    for i, scene in enumerate(scenes):
        cv2.imwrite(str(folder / f"{i}.png"), vision.SCENES[scene]())
    (folder / "1b.png").write_bytes(b"not a png at all")  # skipped, not the end of the folder
    (folder / "notes.txt").write_text("not an image")
    capture = capture_of(
        SourceSpec(name="shots", kind="file", path="shots", fps=20, loop=False), tmp_path
    )
    shown: list[float] = []
    put = capture.slot.put

    def noted(frame: Any, at: float) -> None:
        shown.append(float(frame.mean()))
        put(frame, at)

    capture.slot.put = noted  # type: ignore[method-assign]
    with running(capture):
        poll_for(lambda: capture.state == "ended", 10, what="every image shown")
    assert capture.frames_in == 4
    expected = [float(vision.SCENES[scene]().mean()) for scene in scenes]
    assert [round(m) for m in shown] == [round(m) for m in expected]  # in name order


def test_a_camera_that_is_not_there_and_a_screen_without_display_are_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    camera = capture_of(SourceSpec(name="webcam", kind="camera", device=97), tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    screen = capture_of(SourceSpec(name="screen", kind="screen"), tmp_path)
    with running(camera), running(screen):
        poll_for(lambda: camera.state == screen.state == "retrying", 10, what="both retrying")
        assert camera.detail == "camera /dev/video97 did not open: is it plugged in and not in use?"
        assert screen.detail.startswith("no display to capture: DISPLAY is not set")
