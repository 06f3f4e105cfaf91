"""The perception actor under the supervisor, on footage made from real photographs: a person
sits down at the desk and leaves again; Hex's brain hears both moments; the owner pauses the
camera (its file is closed at once) and resumes it; a camera that is not there is one line in
``hexbus status`` while the other source goes on; a camera opens only while the owner's camera
capability is on, and is released the moment it is switched off."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from hexbus.bus import BusClient
from schemas import Observation, VisionMoment
from tests.support import vision
from tests.support.brain import brain_toml
from tests.support.harness import FAST_BUS, Hex, HexFactory, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


def perception_toml(sources: str, **config: Any) -> str:
    lines = [
        "[actors.perception]",
        'module = "actors.perception.actor:PerceptionActor"',
        "[actors.perception.config]",
        "arrive_s = 1.0",
        "leave_s = 3.0",
        "emotion_hold_s = 1.0",
        "retry_initial_s = 0.5",
        "retry_max_s = 1.0",
        *(f"{k} = {v}" for k, v in config.items()),
        sources,
    ]
    return "\n".join(lines) + "\n"


def file_source(name: str, path: Path, loop: bool) -> str:
    return (
        f"[[actors.perception.config.sources]]\nname = {name!r}\nkind = 'file'\n"
        f"path = {str(path)!r}\nloop = {str(loop).lower()}\n"
    )


def holds(pid: int, path: Path) -> bool:
    try:
        return any(f.path == str(path) for f in psutil.Process(pid).open_files())
    except psutil.Error:
        return False


async def watch(
    hx: Hex, seconds: float, until_moment: bool = True
) -> tuple[list[Observation], list[VisionMoment]]:
    """What perception publishes: until someone has left (within ``seconds``), then 2.5 s more;
    or, with ``until_moment`` false, for 2.5 s."""
    client = BusClient(hx.endpoints, "eyes-test")
    client.subscribe("vision.observation")
    client.start()
    observations: list[Observation] = []
    moments: list[VisionMoment] = []

    async def volatile() -> None:
        async for envelope, _ in client.volatile():
            if isinstance(envelope.body, Observation):
                observations.append(envelope.body)

    async def durable() -> None:
        async for envelope, _ in client.durable(["vision.moment"], after=0, wait_ms=200):
            if envelope is not None and isinstance(envelope.body, VisionMoment):
                moments.append(envelope.body)
                if envelope.body.change == "left":
                    return

    reader = asyncio.ensure_future(volatile())
    try:
        if until_moment:
            await asyncio.wait_for(durable(), seconds)
        await asyncio.sleep(2.5)  # the empty desk's pictures after the person left
    finally:
        reader.cancel()
        await client.close()
    return observations, moments


def test_a_person_arrives_and_leaves_and_the_brain_hears_both(hex_factory: HexFactory) -> None:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    shots = [vision.Shot("desk", 3.0), vision.Shot("person", 6.0), vision.Shot("desk", 30.0)]
    video = vision.write_video(root / "desk.avi", shots, fps=10)
    config = brain_toml(root) + perception_toml(file_source("desk", video, loop=False))
    hx = hex_factory(config, root=root).start()
    observations, moments = asyncio.run(watch(hx, 90))
    kinds = [m.change for m in moments if m.change != "emotion"]
    assert kinds == ["arrived", "left"], moments
    arrived = moments[0]
    assert (
        arrived.source == "desk" and arrived.text == "someone just sat down in front of the camera"
    )
    seen = [o for o in observations if o.present and o.people == 1]
    assert seen and all(o.faces[0].attentive and o.faces[0].emotion for o in seen)
    assert any(o.text.startswith("one person, looking at the screen") for o in seen)
    assert any(o.text == "nobody in view" for o in observations), [o.text for o in observations]
    assert all(o.source == "desk" and o.kind == "file" for o in observations)
    hx.stop()  # the brain's final snapshot holds what it saw last
    brain = hx.snapshot_state("brain")
    assert brain["moment"] == "they just left" and brain["observation"] == "nobody in view"


def test_pause_closes_the_source_at_once_and_a_missing_camera_is_one_line_in_status(
    hex_factory: HexFactory,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    video = vision.write_video(root / "loop.avi", [vision.Shot("person", 2.0)], fps=10)
    # A "camera" OpenCV opens by its path: the owner's camera switch decides whether it may.
    lens_video = vision.write_video(root / "lens.avi", [vision.Shot("desk", 2.0)], fps=10)
    sources = (
        file_source("desk", video, loop=True)
        + "[[actors.perception.config.sources]]\nname = 'webcam'\nkind = 'camera'\ndevice = 97\n"
        + "[[actors.perception.config.sources]]\nname = 'lens'\nkind = 'camera'\n"
        + f"device = {str(lens_video)!r}\n"
    )
    hx = hex_factory(FAST_BUS + perception_toml(sources), root=root).start()
    pid = hx.pid("perception")
    poll_for(lambda: holds(pid, video), 20, what="the video open")
    # The camera capability is off by default: no camera is opened, and status says the fix.
    detail = hx.status()["perception"].get("detail", "")
    assert "webcam paused: camera is off (`hexbus capability enable camera`)" in detail, detail
    assert not holds(pid, lens_video)
    enabled = hx.cli("capability", "enable", "camera")
    assert enabled.returncode == 0 and enabled.stdout.strip() == "camera is on for everyone"
    poll_for(lambda: holds(pid, lens_video), 20, what="the camera open once switched on")
    detail = poll_for(
        lambda: (d := hx.status()["perception"].get("detail", "")) and "webcam retrying" in d and d,
        20,
        what="the camera's line in status",
    )
    assert "camera /dev/video97 did not open" in detail and "desk running" in detail
    assert hx.status()["perception"]["state"] == "live"

    paused = hx.cli("perception", "pause")
    assert paused.returncode == 0 and paused.stdout.strip() == "paused: every source", paused
    assert not holds(pid, video)  # closed before the report came back
    status = hx.cli("perception", "status")
    assert status.returncode == 0 and status.stdout.startswith("paused"), status
    assert "desk (file): paused" in status.stdout

    # A pause survives a restart of the actor: it never opens the file again until resumed.
    hx.command("restart", "perception")
    pid = hx.wait_restarted("perception", pid)
    poll_for(
        lambda: "desk paused" in hx.status()["perception"].get("detail", ""),
        20,
        what="paused after the restart",
    )
    assert not holds(pid, video)

    typo = hx.cli("perception", "resume", "dsek")
    assert typo.returncode == 1 and "no source is named 'dsek'" in typo.stderr, typo
    resumed = hx.cli("perception", "resume")
    assert resumed.stdout.strip() == "looking (nothing paused)", resumed
    poll_for(lambda: holds(pid, video), 20, what="the video open again")
    status = hx.cli("perception", "status")
    assert status.stdout.startswith("looking") and "webcam (camera): retrying" in status.stdout
    # And it is looked at again, not only opened: the person in it is seen.
    observations, _ = asyncio.run(watch(hx, 0, until_moment=False))
    assert any(o.source == "desk" and o.people == 1 for o in observations), observations
    # The switch held across the restart. (OpenCV reads this "camera" to its end in no time
    # and it is opened again after each end, so it is held again and again, not always.)
    poll_for(lambda: holds(pid, lens_video), 20, what="the camera open after the restart")

    # The owner switches the camera off: released at once; the file source is not a camera.
    disabled = hx.cli("capability", "disable", "camera")
    assert disabled.returncode == 0 and disabled.stdout.strip() == "camera is off for everyone"
    poll_for(lambda: not holds(pid, lens_video), 5, what="the camera released")
    detail = poll_for(
        lambda: (d := hx.status()["perception"].get("detail", "")) and "lens paused" in d and d,
        10,
        what="the camera's line in status",
    )
    assert "lens paused: camera is off" in detail
    time.sleep(1.5)  # past a retry's backoff: it stays closed
    assert not holds(pid, lens_video) and holds(pid, video)
    listed = json.loads(hx.cli("capability", "list", "--json").stdout)
    camera = next(c for c in listed if c["name"] == "camera")
    assert camera["enabled"] is False and camera["default"] is False and camera["description"]
