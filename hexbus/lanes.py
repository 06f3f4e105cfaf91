"""A volatile lane of the broker: XSUB -> XPUB forwarded by libzmq itself, off the broker's loop."""

from __future__ import annotations

import threading

import structlog
import zmq

log = structlog.get_logger("hexbus.broker")


class VolatileLane:
    """XSUB -> XPUB forwarding inside libzmq, on a thread of its own, stopped through a control pair.

    The XSUB also binds an inproc address, where the broker's own PUB connects to publish
    heartbeats and the durable events that observers tail.
    """

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        name: str,
        xsub: zmq.Socket[bytes],
        xpub: zmq.Socket[bytes],
    ) -> None:
        self.name = name
        self.inproc = f"inproc://hexbus-{name}-{id(self):x}"
        xsub.bind(self.inproc)
        self.xsub, self.xpub = xsub, xpub
        self.control: zmq.Socket[bytes] = ctx.socket(zmq.PAIR)
        self.control.bind(f"inproc://hexbus-{name}-control-{id(self):x}")
        self._peer: zmq.Socket[bytes] = ctx.socket(zmq.PAIR)
        self._peer.connect(f"inproc://hexbus-{name}-control-{id(self):x}")
        self.thread = threading.Thread(target=self._run, name=f"volatile-{name}", daemon=True)

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.xsub, self.xpub, None, self._peer)
        except zmq.ContextTerminated:
            pass
        except zmq.ZMQError as exc:
            log.error("broker.volatile_lane_failed", lane=self.name, error=str(exc))
        finally:
            for sock in (self.xsub, self.xpub, self._peer):
                sock.close(linger=0)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.control.send(b"TERMINATE")
            self.thread.join(2)
        self.control.close(linger=0)
