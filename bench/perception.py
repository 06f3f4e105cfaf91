"""Perception's cost and delay on real footage, in this process, measured against its own floor.

Footage is made from photographs that ship in scikit-image (tests/support/vision.py): an empty
desk and a person sitting at it, with sensor noise and a person who sways.

- ``analysis_ms_moving``: one analysis (faces, emotion per face, motion) of 640x480 frames in
  which the person moves, so the detectors run every time; ``analysis_ms_still``: the same on
  frames of a still scene (new sensor noise only), where the last faces are reused;
  ``still_over_moving`` their ratio (the cheap path's share of the full cost).
- At ``--fps`` (30) input of 1920x1080 frames for ``--seconds``, read by a capture thread into the
  one-frame slot while the actor's loop (an :class:`Eye`, as the actor runs it) analyses at
  ``--rate`` (5 Hz): ``frames_in``, ``frames_analysed``, ``frames_dropped`` (replaced before
  anyone took them: by design, never queued) and ``cpu_share`` (this process's CPU time over
  wall time, per core of the machine).
- ``observation_latency_ms``: from the first frame with the person put in the slot (after an
  empty desk) to the loop's observation with one person in it, p50 and max over the run's
  appearances; ``latency_over_interval`` divides it by the analysis interval (1/rate), its
  floor: a value near 1 means the wait for the next look is all there is.
- ``avatar_lipsync_offset_ms`` (p50, p95 of the absolute value): each mouth frame of the avatar
  actor (a real Hex, VMC out to a loopback receiver) against the playback start of the chunk it
  shows, on the clock of a player that plays ``audio.out`` back to back as it arrives
  (bench/_lipsync.py); ``avatar_lipsync_p95_over_floor`` divides the p95 by that of a perfect
  avatar at the same frame times (a frame shows the chunk playing: up to 20 ms into it).

Run: ``python bench/perception.py`` (``--quick``: shorter). Prints JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from actors.perception.actor import WANT_LEAD_S
from actors.perception.analysis import Analyzer, load_emotion_model
from actors.perception.capture import Capture
from actors.perception.eye import Eye
from actors.perception.presence import Presence
from actors.perception.sources import SKIPPED
from bench._common import emit, parser, percentile, progress, summary
from bench._lipsync import lipsync
from tests.support import vision


class Footage:
    """A source that plays prepared frames at ``fps`` and says when each person scene began."""

    kind = "file"

    def __init__(self, shots: list[vision.Shot], fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.name = "bench"
        self.fps = fps
        self.frames: list[tuple[Any, bool]] = []
        for shot in shots:
            for frame in vision.frames([shot], fps):
                big = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
                self.frames.append((big, shot.scene == "person"))
        self.index = 0
        self.next = 0.0
        self.appeared: list[float] = []  # when a person's first frame of a scene was read
        self._was = False

    def open(self) -> None:
        self.next = time.monotonic()

    def read(self, want: bool = True) -> Any:
        self.next += 1 / self.fps
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame, person = self.frames[self.index % len(self.frames)]
        self.index += 1
        if person and not self._was:
            self.appeared.append(time.time())  # in the source, whether or not it is looked at
        self._was = person
        return frame if want else SKIPPED

    def close(self) -> None:
        pass

    def window(self) -> str:
        return ""


def analysis_costs(n: int) -> dict[str, Any]:
    import numpy as np

    model = load_emotion_model()
    rng = np.random.default_rng(7)
    moving = Analyzer(emotion=model)
    moving.load()
    times: list[float] = []
    for i in range(n):
        frame = vision.noisy(vision.person(0.78, 0.5 + 0.08 * np.sin(i)), rng)
        t = time.perf_counter()
        result = moving(frame, float(i))
        times.append((time.perf_counter() - t) * 1000)
        assert result.detected
    still = Analyzer(emotion=model)
    still.load()
    picture = vision.person()
    still(vision.noisy(picture, rng), 0.0)
    quiet: list[float] = []
    for i in range(n):
        frame = vision.noisy(picture, rng)
        t = time.perf_counter()
        still(frame, 0.1 * (i + 1) % still.redetect_s)  # within redetect_s: the cheap path
        quiet.append((time.perf_counter() - t) * 1000)
    out: dict[str, Any] = {
        **summary(times, "analysis_ms_moving"),
        **summary(quiet, "analysis_ms_still"),
    }
    out["still_over_moving"] = round(percentile(quiet, 50) / percentile(times, 50), 3)
    return out


async def live(seconds: float, fps: float, rate: float) -> dict[str, Any]:
    shots = [vision.Shot("desk", 2.0), vision.Shot("person", 2.0)]
    progress(f"preparing {len(shots)} shots of 1920x1080 frames")
    footage = Footage(shots, fps, (1920, 1080))
    capture = Capture(footage)  # type: ignore[arg-type]
    eye = Eye(capture, Analyzer(emotion=load_emotion_model()), Presence(), observe_every_s=0.0)
    eye.analyzer.load()
    pool = ThreadPoolExecutor(max_workers=2)
    loop = asyncio.get_running_loop()

    async def offload(fn: Any, *args: Any) -> Any:
        return await loop.run_in_executor(pool, fn, *args)

    stop = threading.Event()
    thread = threading.Thread(target=capture.run, args=(stop,), daemon=True)
    process = psutil.Process()
    cpu0, wall0 = sum(process.cpu_times()[:2]), time.monotonic()
    thread.start()
    seen: list[float] = []  # when an observation with a person came out, per appearance
    progress(f"{seconds:g} s at {fps:g} fps in, looking at {rate:g} Hz")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        observation, _ = await eye.look(offload)
        if observation is not None and observation.people and len(seen) < len(footage.appeared):
            seen.append(time.time())
        left = max(0.0, 1 / rate - (time.monotonic() - started))
        eye.capture.want_at = time.monotonic() + left - WANT_LEAD_S  # as the actor does
        await asyncio.sleep(left)
    cpu = sum(process.cpu_times()[:2]) - cpu0
    wall = time.monotonic() - wall0
    stop.set()
    thread.join(5)
    pool.shutdown()
    latencies = [(s - a) * 1000 for a, s in zip(footage.appeared, seen, strict=False)]
    return {
        "input_fps": fps,
        "rate_hz": rate,
        "seconds": seconds,
        "frames_in": capture.frames_in,
        "frames_analysed": eye.analysed,
        "frames_dropped": capture.slot.dropped,
        "cpu_share": round(cpu / wall / (psutil.cpu_count() or 1), 3),
        **summary(latencies, "observation_latency_ms", digits=1),
        "latency_over_interval": round(percentile(latencies, 50) / (1000 / rate), 2)
        if latencies
        else None,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=40.0)
    args = p.parse_args()
    n = 20 if args.quick else 60
    seconds = 12.0 if args.quick else args.seconds
    progress(f"analysis cost, {n} frames moving and {n} still")
    result: dict[str, Any] = {"bench": "perception", "quick": args.quick}
    result.update(analysis_costs(n))
    result.update(asyncio.run(live(seconds, args.fps, args.rate)))
    result.update(lipsync(rounds=2 if args.quick else 5))
    emit(result)


if __name__ == "__main__":
    main()
