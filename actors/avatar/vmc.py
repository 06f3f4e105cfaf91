"""The VMC protocol out: each frame as one OSC bundle over UDP (python-osc), for VSeeFace, VNyan,
VMagicMirror and any other VMC receiver.

A bundle holds every blendshape Hex drives (the mouth, the blink, each mapped expression: the one
showing at its weight and the others at 0, so a faded expression is really gone), the head and
eye bones as rotations, the time, and ``/VMC/Ext/Blend/Apply``. UDP has no connection: a send
that fails (no route, an address that does not resolve) is logged once and tried again after a
backoff, so a receiver started later simply starts receiving.
"""

from __future__ import annotations

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
    """Unity's (x, y, z, w) for a rotation of ``yaw`` about Y, ``pitch`` about X and ``roll``
    about Z, in degrees (Unity's Z-X-Y order)."""
    x, y, z = (math.radians(a) / 2 for a in (-pitch, yaw, roll))
    cx, sx, cy, sy, cz, sz = (
        math.cos(x),
        math.sin(x),
        math.cos(y),
        math.sin(y),
        math.cos(z),
        math.sin(z),
    )
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
        self.config = config
        self.sock: socket.socket | None = None
        self.address: Any = None
        self.backoff = Backoff(retry_initial_s, retry_max_s)
        self.retry_at = 0.0
        self.state = "starting"
        self.detail = ""
        self.sent = 0
        self.started = time.monotonic()

    def bundle(self, frame: Frame) -> bytes:
        from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
        from pythonosc.osc_message_builder import OscMessageBuilder

        def message(address: str, *args: float | str) -> object:
            builder = OscMessageBuilder(address=address)
            for arg in args:
                builder.add_arg(arg)
            return builder.build()

        c = self.config
        bundle = OscBundleBuilder(IMMEDIATELY)
        bundle.add_content(message(TIME, float(frame.at - self.started)))  # type: ignore[arg-type]
        shapes: dict[str, float] = {name: 0.0 for name in c.expressions.values()}
        shown = c.expressions.get(frame.expression)
        if shown:
            shapes[shown] = max(shapes[shown], frame.weight)
        shapes[c.blink] = 1.0 - frame.eyes_open
        shapes[c.mouth] = frame.mouth
        for name, value in shapes.items():
            bundle.add_content(message(BLEND, name, float(round(value, 4))))  # type: ignore[arg-type]
        head = quaternion(frame.yaw, frame.pitch, frame.roll)
        bundle.add_content(message(BONE, "Head", 0.0, 0.0, 0.0, *head))  # type: ignore[arg-type]
        eyes = quaternion(25.0 * frame.gaze_x, 15.0 * frame.gaze_y, 0.0)
        for bone in ("LeftEye", "RightEye"):
            bundle.add_content(message(BONE, bone, 0.0, 0.0, 0.0, *eyes))  # type: ignore[arg-type]
        bundle.add_content(message(APPLY))  # type: ignore[arg-type]
        return bytes(bundle.build().dgram)

    def send(self, frame: Frame) -> None:
        now = time.monotonic()
        if now < self.retry_at:
            return
        data = self.bundle(frame)
        try:
            if self.sock is None:
                family, kind, proto, _, address = socket.getaddrinfo(
                    self.config.host, self.config.port, type=socket.SOCK_DGRAM
                )[0]
                self.sock, self.address = socket.socket(family, kind, proto), address
                self.sock.setblocking(False)  # a full send buffer drops a frame, never waits
            self.sock.sendto(data, self.address)
        except BlockingIOError:
            return
        except OSError as exc:
            self.close()
            delay = self.backoff.next()
            self.retry_at = now + delay
            why = f"{type(exc).__name__}: {exc}"
            if self.state != "retrying":
                log.warning("avatar.vmc_failed", to=self.where, error=why, retry_s=round(delay, 1))
            self.state, self.detail = "retrying", why
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
        if self.sock is not None:
            self.sock.close()
            self.sock = None
