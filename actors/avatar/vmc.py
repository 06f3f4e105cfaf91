"""The VMC protocol out: each frame as one OSC bundle over UDP (python-osc), for VSeeFace, VNyan,
VMagicMirror and any other VMC receiver.

A bundle holds ``/VMC/Ext/T``, every blendshape Hex drives (the mouth, the blink, where she looks
as the four look blendshapes, each mapped expression: the one showing at its weight and the
others at 0, so a faded expression is really gone), the head as ``/VMC/Ext/Bone/Pos`` when the
model's Head rest position is configured (a bone message sets position as well as rotation),
and ``/VMC/Ext/Blend/Apply`` last.

UDP has no connection. The receiver's address is resolved off the loop (:meth:`VmcOutput.keep`,
a task of the actor's); until it resolves, frames are dropped and the status says why. A send
that fails is logged once and the address resolved again after a backoff, so a receiver
started later simply starts receiving.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from typing import Any

import structlog

from actors.avatar.arbiter import Frame
from actors.avatar.config import VmcConfig
from actors.avatar.retry import Backoff

log = structlog.get_logger("actors.avatar.vmc")

BLEND = "/VMC/Ext/Blend/Val"
APPLY = "/VMC/Ext/Blend/Apply"
BONE = "/VMC/Ext/Bone/Pos"
TIME = "/VMC/Ext/T"


def quaternion(yaw: float, pitch: float, roll: float) -> tuple[float, float, float, float]:
    """Unity's (x, y, z, w) for a VRM model facing the viewer (+Z) turning ``yaw`` degrees to its
    left, nodding ``pitch`` up and tilting ``roll`` (Unity's Z-X-Y order; Unity is left-handed,
    so turning to her left is a negative rotation about Y)."""
    x, y, z = (math.radians(a) / 2 for a in (-pitch, -yaw, roll))
    cx, sx = math.cos(x), math.sin(x)
    cy, sy = math.cos(y), math.sin(y)
    cz, sz = math.cos(z), math.sin(z)
    return (
        sx * cy * cz + cx * sy * sz,
        cx * sy * cz - sx * cy * sz,
        cx * cy * sz - sx * sy * cz,
        cx * cy * cz + sx * sy * sz,
    )


class VmcOutput:
    """Sends frames to one VMC receiver; ``state`` and ``detail`` say how that goes."""

    name = "vmc"

    def __init__(
        self, config: VmcConfig, *, retry_initial_s: float = 1.0, retry_max_s: float = 30.0
    ) -> None:
        from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
        from pythonosc.osc_message_builder import OscMessageBuilder

        self._bundle, self._message, self._now = OscBundleBuilder, OscMessageBuilder, IMMEDIATELY
        self.config = config
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)  # a full send buffer drops a frame, never waits
        self.address: Any = None
        self.backoff = Backoff(retry_initial_s, retry_max_s)
        self.resolve_now = asyncio.Event()
        self.resolve_now.set()
        self.retry_at = 0.0
        self.state = "resolving"
        self.detail = ""
        self.sent = 0
        self.started = time.monotonic()

    async def keep(self) -> None:
        """Resolve the receiver's address whenever it is unknown (at the start, after a failed
        send), off the loop, retrying with backoff."""
        while True:
            await self.resolve_now.wait()
            await asyncio.sleep(max(0.0, self.retry_at - time.monotonic()))
            if await self.resolve():
                self.resolve_now.clear()

    async def resolve(self) -> bool:
        """One try at the receiver's address; False (and the status says why) when it fails."""
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                self.config.host, self.config.port, type=socket.SOCK_DGRAM
            )
        except (OSError, UnicodeError) as exc:
            self.fail(f"{self.where} does not resolve: {exc}")
            return False
        family, _, _, _, address = found[0]
        if family != self.sock.family:
            self.sock.close()
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.setblocking(False)
        self.address = address
        return True

    def fail(self, why: str) -> None:
        if self.state != "retrying":
            log.warning("avatar.vmc_failed", to=self.where, error=why)
        self.state, self.detail = "retrying", why
        self.address = None
        self.retry_at = time.monotonic() + self.backoff.next()

    def bundle(self, frame: Frame) -> bytes:
        c = self.config

        def message(address: str, *args: float | str) -> Any:
            builder = self._message(address=address)
            for arg in args:
                builder.add_arg(arg)
            return builder.build()

        bundle = self._bundle(self._now)
        bundle.add_content(message(TIME, float(frame.at - self.started)))
        shapes: dict[str, float] = dict.fromkeys(c.expressions.values(), 0.0)
        shown = c.expressions.get(frame.expression)
        if shown:
            shapes[shown] = frame.weight
        left, right, up, down = c.look
        for name, value in ((left, frame.gaze_x), (right, -frame.gaze_x)):
            if name:
                shapes[name] = max(0.0, value)
        for name, value in ((up, frame.gaze_y), (down, -frame.gaze_y)):
            if name:
                shapes[name] = max(0.0, value)
        shapes[c.blink] = 1.0 - frame.eyes_open
        shapes[c.mouth] = frame.mouth
        for name, value in shapes.items():
            bundle.add_content(message(BLEND, name, float(round(value, 4))))
        if len(c.head_rest) == 3:
            head = quaternion(frame.yaw, frame.pitch, frame.roll)
            bundle.add_content(message(BONE, "Head", *c.head_rest, *head))
        bundle.add_content(message(APPLY))
        return bytes(bundle.build().dgram)

    def send(self, frame: Frame) -> None:
        """Send ``frame`` now (never waits; dropped while the address is unknown)."""
        if self.address is None:
            return
        try:
            self.sock.sendto(self.bundle(frame), self.address)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
            self.resolve_now.set()
            return
        if self.state != "sending":
            log.info("avatar.vmc_sending", to=self.where)
            self.backoff.reset()
        self.state, self.detail = "sending", ""
        self.sent += 1

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def close(self) -> None:
        self.sock.close()
