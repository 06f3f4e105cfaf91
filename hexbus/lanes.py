"""A volatile lane of the broker: XSUB -> XPUB forwarded off the broker's loop.

On the 0700 ipc run directory every peer is this host, and libzmq forwards by itself (no Python
per message). With hosts admitted by CURVE key, the lane reads each frame's origin (the name the
authenticator gave its connection) and drops privileged requests (schemas.PRIVILEGED: control,
memory, chat, persona) from hosts the origin rule (hexbus/origins.py) does not allow.
"""

from __future__ import annotations

import threading

import structlog
import zmq

from hexbus.codec import MAX_TOPIC_BYTES
from hexbus.origins import Origins, origin_of

log = structlog.get_logger("hexbus.broker")


class VolatileLane:
    """XSUB -> XPUB forwarding on a thread of its own, stopped through a control pair.

    The XSUB also binds an inproc address, where the broker's own PUB connects to publish
    heartbeats and the durable events that observers tail (always ``local``). ``checked``: the
    origin rule, when frames must be looked at (None: libzmq forwards alone).
    """

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        name: str,
        xsub: zmq.Socket[bytes],
        xpub: zmq.Socket[bytes],
        checked: Origins | None = None,
    ) -> None:
        self.name = name
        self.inproc = f"inproc://hexbus-{name}-{id(self):x}"
        xsub.bind(self.inproc)
        self.xsub, self.xpub = xsub, xpub
        self.checked = checked
        self.dropped = 0  # privileged frames from other origins
        self.reported = 0  # of them, counted by the broker's heartbeat
        self.control: zmq.Socket[bytes] = ctx.socket(zmq.PAIR)
        self.control.bind(f"inproc://hexbus-{name}-control-{id(self):x}")
        self._peer: zmq.Socket[bytes] = ctx.socket(zmq.PAIR)
        self._peer.connect(f"inproc://hexbus-{name}-control-{id(self):x}")
        self.thread = threading.Thread(target=self._run, name=f"volatile-{name}", daemon=True)

    def _run(self) -> None:
        try:
            if self.checked is None:
                zmq.proxy_steerable(self.xsub, self.xpub, None, self._peer)
            else:
                self._forward_checked(self.checked)
        except zmq.ContextTerminated:
            pass
        except zmq.ZMQError as exc:
            log.error("broker.volatile_lane_failed", lane=self.name, error=str(exc))
        finally:
            for sock in (self.xsub, self.xpub, self._peer):
                sock.close(linger=0)

    def _forward_checked(self, origins: Origins) -> None:
        poller = zmq.Poller()
        for sock in (self.xsub, self.xpub, self._peer):
            poller.register(sock, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._peer in ready:
                return  # TERMINATE
            if self.xpub in ready:  # subscriptions travel upstream to the publishers
                for _ in range(256):
                    try:
                        self.xsub.send_multipart(self.xpub.recv_multipart(zmq.NOBLOCK))
                    except zmq.Again:
                        break
            if self.xsub in ready:
                for _ in range(256):
                    try:
                        frames = self.xsub.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    origin = origin_of(frames[0])  # inproc frames (the broker's own) are local
                    if origin not in origins.full:
                        head = bytes(frames[0].buffer[: MAX_TOPIC_BYTES + 1])  # no copy of the rest
                        topic = head.decode("utf-8", "replace")
                        if not origins.allows_volatile(origin, topic):
                            self._drop(origin, topic)
                            continue
                    try:
                        self.xpub.send_multipart(frames, zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        pass  # XPUB drops for slow subscribers itself; this is only belt and braces

    def _drop(self, origin: str, topic: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("bus.origin_refused", origin=origin, topic=topic[:80], dropped=self.dropped)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.control.send(b"TERMINATE")
            self.thread.join(2)
        self.control.close(linger=0)
