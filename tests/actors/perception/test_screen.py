"""The screen source on a real X server (Xvfb, from Debian): frames of the screen with a real
window on it, the active window's title as a window manager announces it, and an X server that
goes away (the source retries, saying why) and comes back (capture resumes)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from actors.perception.capture import Capture
from actors.perception.sources import SourceSpec, active_window_title, make_source
from tests.support.harness import poll_for

pytestmark = pytest.mark.process

TITLE = "Quarterly report.ods - LibreOffice Calc"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: scripts/test installs it (apt-get install xvfb x11-utils)"
        )
    return found


def free_display() -> str:
    for n in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return f":{n}"
    raise RuntimeError("no free X display number between :90 and :199")


@contextmanager
def xvfb(display: str) -> Iterator[None]:
    """An X server with a 640x480 screen on ``display``."""
    server = subprocess.Popen(
        [tool("Xvfb"), display, "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        stderr=subprocess.DEVNULL,
    )
    try:
        socket = Path(f"/tmp/.X11-unix/X{display[1:]}")
        poll_for(socket.exists, 10, what=f"Xvfb on {display}")
        yield
    finally:
        server.terminate()
        server.wait(10)


@contextmanager
def window(display: str, title: str) -> Iterator[None]:
    """A real X client's window, made the active one as a window manager would announce it."""
    client = subprocess.Popen(
        [tool("xmessage"), "-display", display, "-geometry", "400x300+40+60", "-title", title,
         "Hex is looking at the screen"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def mapped() -> str:
            tree = subprocess.run(
                [tool("xwininfo"), "-display", display, "-root", "-tree"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            return next((line.split()[0] for line in tree.splitlines() if title in line), "")

        wid = poll_for(mapped, 10, what="the window")
        subprocess.run(
            [tool("xprop"), "-display", display, "-root", "-f", "_NET_ACTIVE_WINDOW", "32x",
             "-set", "_NET_ACTIVE_WINDOW", wid],
            check=True,
        )  # fmt: skip
        yield
    finally:
        client.terminate()
        client.wait(10)


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


@pytest.mark.slow  # seconds on two slow cores: the full suite's
def test_the_screen_with_a_window_on_it_its_title_and_an_x_server_that_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    display = free_display()
    monkeypatch.setenv("DISPLAY", display)
    source = make_source(SourceSpec(name="screen", kind="screen", fps=10), tmp_path)
    capture = Capture(source, backoff_initial_s=0.2, backoff_max_s=0.4)
    with running(capture):
        with xvfb(display), window(display, TITLE):
            poll_for(lambda: capture.frames_in >= 3, 20, what="frames of the screen")
            frame, _, _ = capture.slot.take(0, 5)  # type: ignore[misc]
            assert frame.shape == (480, 640, 3) and capture.state == "running"
            # The window is on it: bright where it is, the bare root around it.
            assert frame[100:300, 60:400].mean() > 200 and frame[400:, 500:].mean() < 50
            assert active_window_title() == TITLE
            title = poll_for(source.window, 10, what="the source's title")
            assert title == TITLE
        # The X server went away under the capture thread: it says so, and retries.
        poll_for(lambda: capture.state == "retrying", 20, what="retrying without the X server")
        assert display in capture.detail, capture.detail
        before = capture.frames_in
        with xvfb(display):  # the same display comes back: capture resumes by itself
            poll_for(
                lambda: capture.state == "running" and capture.frames_in > before,
                30,
                what="capture again",
            )
    assert active_window_title() == ""  # no X server: no title, and no error
