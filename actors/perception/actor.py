"""The perception actor: Hex sees, a few times a second at most, and never slows anything else.

Each source (a camera, the screen, a video file or an image folder) is read by a capture thread
of its own into a one-frame slot; each is looked at by a task that takes the newest frame at the
governed rate and analyses it in a worker thread (faces, emotion, attention, motion), so the
actor's loop only publishes. Out go ``vision.observation`` (volatile: the picture now, when it
changes or every ``observe_every_s``), ``vision.moment`` (durable: someone arrived, left, or
their mood changed and held) and, while someone holds a ``vision.preview`` lease, small JPEG
``vision.frame`` previews. No frame is written to disk or journaled.

A camera source looks only while the owner's ``camera`` capability is on, and a screen source
while ``screen`` is (``hexbus capability``): switched off, the source is released as for a
pause, and the status line says which switch to turn on. A camera cannot tell people apart:
one person's own "stop looking at me through the camera" shuts it for everyone. A video file
or image folder is the owner's own footage and obeys only pauses.

``perception.pause`` stops capture at once and releases the device (the capture thread closes
it before its next read); the pause is kept in the snapshot, so a restart stays paused, and
capture starts only once replay has applied every pause. Each pause and resume is reported by
a durable ``perception.switched``; ``perception.state`` (every few seconds and on a change)
feeds any indicator, and the actor's status line says the same in ``hexbus status``.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, ClassVar

import psutil
import structlog

from actors.perception.analysis import Analyzer, load_emotion_model
from actors.perception.capture import Capture
from actors.perception.config import PerceptionConfig, PerceptionMemory, Seen
from actors.perception.eye import Eye
from actors.perception.governor import Governor
from actors.perception.presence import Presence
from actors.perception.sources import make_source
from hexbus import Actor, ActorUnusable, on
from hexbus.models import LazyModel, ModelMissing
from schemas import (
    CapabilityChanged,
    PerceptionPause,
    PerceptionResume,
    PerceptionState,
    PerceptionStatus,
    PerceptionSwitched,
    PreviewLease,
    VisionFrame,
)

log = structlog.get_logger("actors.perception")

EVERY = "*"
NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")  # a source's name: part of its events' topics
TICK_S = 2.0  # the governor's CPU reading and the state's refresh
STATE_EVERY_S = 5.0  # perception.state is republished this often when nothing changes
WANT_LEAD_S = 0.1  # pictures are made from this long before the next look (3 frames at 30 fps)
SWITCHED = ("camera", "screen")  # kinds of source that obey the capability of their own name


class PerceptionActor(Actor[PerceptionConfig, PerceptionMemory]):
    subscribes: ClassVar[tuple[str, ...]] = (
        "perception.pause",
        "perception.resume",
        "perception.status",
        "vision.preview",
        "capability.changed",
    )
    config_type = PerceptionConfig
    state_type = PerceptionMemory

    async def setup(self) -> None:
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise ActorUnusable(
                "OpenCV is not installed: pip install -e '.[perception]' (see MODELS.md)"
            ) from None
        names = [s.name for s in self.config.sources]
        if len(set(names)) != len(names) or not all(NAME.fullmatch(n) for n in names):
            raise ActorUnusable(
                f"perception sources need distinct names of letters, digits, - and _: {names}"
            )
        self.emotion_off = ""
        emotion = None
        if self.config.emotion:
            try:
                emotion = await self.load_model(LazyModel("emotion model", load_emotion_model))
            except ModelMissing as exc:  # faces without emotion, and the status says why
                self.emotion_off = str(exc)
                log.warning("perception.emotion_off", reason=self.emotion_off)
        self.eyes: list[Eye] = []
        for spec in self.config.sources:
            analyzer = Analyzer(emotion=emotion)
            try:
                await self.offload(analyzer.load)
            except ModelMissing as exc:
                raise ActorUnusable(str(exc)) from None
            capture = Capture(
                make_source(spec, self.config_dir),
                backoff_initial_s=self.config.retry_initial_s,
                backoff_max_s=self.config.retry_max_s,
            )
            seen = self.state.seen.get(spec.name, Seen())
            presence = Presence(
                arrive_s=self.config.arrive_s,
                leave_s=self.config.leave_s,
                hold_s=self.config.emotion_hold_s,
                present=seen.present,
                last_seen=seen.last_seen,
                left_at=seen.left_at,
            )
            self.eyes.append(Eye(capture, analyzer, presence, self.config.observe_every_s))
        self.governor = Governor(
            self.config.rate_hz,
            min_hz=self.config.min_rate_hz,
            high=self.config.cpu_high,
            low=self.config.cpu_low,
        )
        self.leases: dict[str, tuple[float, float]] = {}  # source -> (until, fps), monotonic
        self.previewed: dict[str, float] = {}
        self.stated = ""  # the last state published, to publish again only on a change
        self.stated_at = 0.0
        self.describe()

    async def on_live(self) -> None:
        # Only now: replay has applied every pause, so a paused source never opens, not even once.
        for eye in self.eyes:
            if self.is_paused(eye.name):
                eye.capture.pause()
            self.spawn_thread(eye.capture.run, name=f"capture-{eye.name}")
            self.spawn(self.watch(eye), name=f"watch-{eye.name}")
        self.spawn(self.tick(), name="tick")

    # -- handlers ---------------------------------------------------------------------------

    def unknown(self, source: str) -> str:
        """Why a pause or resume of ``source`` cannot be applied ("" when it can)."""
        names = [e.name for e in self.eyes]
        if source and source not in names:
            return f"no source is named {source!r} (sources: {', '.join(names)})"
        return ""

    @on(PerceptionPause)
    async def on_pause(self, event: PerceptionPause) -> None:
        if why := self.unknown(event.source):
            await self.publish(PerceptionSwitched(paused=tuple(self.state.paused), error=why))
            return
        target = event.source or EVERY
        if target == EVERY:
            self.state.paused = [EVERY]
        elif target not in self.state.paused:
            self.state.paused.append(target)
        self.apply_pauses()
        for eye in self.eyes:  # released before the report says paused: a privacy promise
            if self.is_paused(eye.name) and not await self.offload(eye.capture.wait_released, 2.0):
                log.warning("perception.release_slow", source=eye.name)
        log.info("perception.paused", source=target, by=event.by)
        await self.publish(PerceptionSwitched(paused=tuple(self.state.paused), by=event.by))
        await self.publish_state(force=True)

    @on(PerceptionResume)
    async def on_resume(self, event: PerceptionResume) -> None:
        if why := self.unknown(event.source):
            await self.publish(PerceptionSwitched(paused=tuple(self.state.paused), error=why))
            return
        if not event.source:
            self.state.paused = []
        elif EVERY in self.state.paused:
            self.state.paused = [e.name for e in self.eyes if e.name != event.source]
        else:
            self.state.paused = [n for n in self.state.paused if n != event.source]
        self.apply_pauses()
        log.info("perception.resumed", source=event.source or EVERY, by=event.by)
        await self.publish(PerceptionSwitched(paused=tuple(self.state.paused), by=event.by))
        await self.publish_state(force=True)

    @on(CapabilityChanged)
    async def on_capability(self, event: CapabilityChanged) -> None:
        self.apply_pauses()  # the base class has applied the newer switches
        for eye in self.eyes:
            if self.switched_off(eye) and not await self.offload(eye.capture.wait_released, 2.0):
                log.warning("perception.release_slow", source=eye.name)
        log.info(
            "perception.switches",
            off=[e.name for e in self.eyes if self.switched_off(e)],
            by=event.by,
        )
        await self.publish_state(force=True)

    @on(PerceptionStatus)
    async def on_status(self, event: PerceptionStatus) -> None:
        await self.respond(self.perception_state())

    @on(PreviewLease)
    async def on_preview(self, event: PreviewLease) -> None:
        seconds = min(max(0.0, event.seconds), 60.0)
        fps = min(max(0.1, event.fps), 10.0)
        self.leases[event.source or EVERY] = (time.monotonic() + seconds, fps)

    # -- the work ---------------------------------------------------------------------------

    def is_paused(self, name: str) -> bool:
        """Paused by a person, or its kind's capability switched off by the owner."""
        if EVERY in self.state.paused or name in self.state.paused:
            return True
        return any(e.name == name and self.switched_off(e) for e in self.eyes)

    def switched_off(self, eye: Eye) -> str:
        """The capability keeping ``eye`` shut ("" when none is). A camera cannot tell who sits
        before it: one person's own "don't look at me" shuts it for everyone."""
        switch = eye.kind if eye.kind in SWITCHED else ""
        return switch if switch and not self.capabilities.allowed_for_all(switch) else ""

    def apply_pauses(self) -> None:
        for eye in self.eyes:
            if self.is_paused(eye.name):
                eye.capture.pause()
                eye.frame = None
            elif eye.capture.paused.is_set():
                eye.capture.resume()
        self.describe()

    async def watch(self, eye: Eye) -> None:
        """Look at one source's newest frame at the governed rate, and publish what it shows.
        A frame that cannot be analysed is logged and skipped: the next one is looked at."""
        failing = ""
        while True:
            started = time.monotonic()
            try:
                observation, moments = await eye.look(self.offload)
            except Exception as exc:  # one bad frame, never the end of looking
                why = f"{type(exc).__name__}: {exc}"
                if why != failing:
                    log.warning("perception.analysis_failed", source=eye.name, error=why)
                failing, observation, moments = why, None, []
            for m in moments:
                log.info("perception.moment", source=eye.name, change=m.change, emotion=m.emotion)
                await self.publish(m, key=eye.name)
            if moments:
                self.remember(eye)
            if observation is not None:
                await self.publish(observation, key=eye.name)
            await self.preview(eye)
            left = 1.0 / self.governor.current - (time.monotonic() - started)
            # A fresh picture ready when the next look comes, none made before (a lease for
            # previews wants them at its own rate).
            now = time.monotonic()
            leased = any(until > now for until, _ in self.leases.values())
            eye.capture.want_at = 0.0 if leased else now + max(0.0, left) - WANT_LEAD_S
            await asyncio.sleep(max(0.01, left))

    def remember(self, eye: Eye) -> None:
        """Save where the source's presence stands (on each moment and every tick)."""
        p = eye.presence
        seen = Seen(present=p.present, last_seen=p.last_seen, left_at=p.left_at)
        if self.state.seen.get(eye.name) != seen:
            self.state.seen[eye.name] = seen
            self.state_changed()

    async def preview(self, eye: Eye) -> None:
        now = time.monotonic()
        lease = self.leases.get(eye.name) or self.leases.get(EVERY)
        if lease is None or lease[0] < now or eye.frame is None or self.is_paused(eye.name):
            return
        if now - self.previewed.get(eye.name, 0.0) < 1.0 / lease[1]:
            return
        self.previewed[eye.name] = now
        jpeg, width, height = await self.offload(
            encode_preview, eye.frame, self.config.preview_width, self.config.preview_quality
        )
        frame = VisionFrame(source=eye.name, width=width, height=height, at=time.time())
        await self.publish(frame, key=eye.name, blob=jpeg)

    async def tick(self) -> None:
        psutil.cpu_percent(None)  # the first reading only starts the measurement
        while True:
            await asyncio.sleep(TICK_S)
            before = self.governor.current
            rate = self.governor.update(psutil.cpu_percent(None))
            if rate != before:
                log.info("perception.rate", hz=round(rate, 2), reason=self.governor.reason)
            self.describe()
            for eye in self.eyes:
                self.remember(eye)
            await self.publish_state()

    def perception_state(self) -> PerceptionState:
        return PerceptionState(
            paused=bool(self.eyes) and all(self.is_paused(e.name) for e in self.eyes),
            sources=tuple(e.state(self.is_paused(e.name)) for e in self.eyes),
            rate_hz=round(self.governor.current, 2),
            governed=self.governor.reason,
            emotion=not self.emotion_off and self.config.emotion,
        )

    async def publish_state(self, *, force: bool = False) -> None:
        state = self.perception_state()
        said = f"{state.paused}|{state.governed}|" + "|".join(
            f"{s.name}:{s.state}:{s.detail}" for s in state.sources
        )
        now = time.monotonic()
        if force or said != self.stated or now - self.stated_at >= STATE_EVERY_S:
            self.stated, self.stated_at = said, now
            await self.publish(state)

    def describe(self) -> None:
        """The status line: each source's state, the rate and why it is lowered."""
        parts = []
        for eye in self.eyes:
            c = eye.capture
            state = "paused" if self.is_paused(eye.name) else c.state
            line = f"{eye.name} {state}"
            if switch := self.switched_off(eye):
                parts.append(f"{line}: {switch} is off (`hexbus capability enable {switch}`)")
                continue
            if state == "retrying":
                line += f" in {max(0.0, c.retry_at - time.monotonic()):.0f}s: {c.detail}"
            elif c.detail and state != "paused":
                line += f": {c.detail}"
            parts.append(line)
        if hasattr(self, "governor") and self.governor.reason:
            parts.append(f"{self.governor.current:g}/s ({self.governor.reason})")
        if self.emotion_off:
            parts.append(f"emotion off: {self.emotion_off.split(':')[0]}")
        self.detail = "; ".join(parts)


def encode_preview(frame: Any, width: int, quality: int) -> tuple[bytes, int, int]:
    """A JPEG of ``frame`` at most ``width`` wide."""
    import cv2

    h, w = frame.shape[:2]
    if w > width:
        frame = cv2.resize(frame, (width, max(1, h * width // w)), interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the preview could not be encoded")
    return data.tobytes(), int(w), int(h)
