"""The supervisor's control protocol, spoken by the CLI over a local socket."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import zmq

Command = Literal[
    "status", "restart", "refresh", "stop", "reload", "ping", "killswitch", "log", "capability"
]


class ControlRequest(msgspec.Struct, frozen=True, kw_only=True):
    cmd: Command
    name: str = ""
    keep: tuple[str, ...] = ()  # killswitch: actors left running (besides the broker)
    after: int = 0  # log: the supervisor's log events numbered after this
    # capability: "" lists them (for ``person``); else switch ``capability`` to ``enabled``, for
    # ``person`` ("" = everyone), asked by ``by`` through ``via``. ``owner``: the interface
    # verified ``by`` is an owner (a terminal on this machine is).
    capability: str = ""
    enabled: bool = False
    person: str = ""
    by: str = ""
    via: str = ""
    owner: bool = False


class ControlReply(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    error: str = ""
    message: str = ""
    data: dict[str, Any] = {}


request_decoder = msgspec.msgpack.Decoder(ControlRequest)
reply_decoder = msgspec.msgpack.Decoder(ControlReply)
encoder = msgspec.msgpack.Encoder()


class SupervisorUnreachable(Exception):
    pass


def call(address: str, request: ControlRequest, timeout: float = 5.0) -> ControlReply:
    """Send one command to the supervisor and wait for its reply (blocking; for the CLI)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(address)
        sock.send_multipart([b"", encoder.encode(request)])
        if not sock.poll(int(timeout * 1000)):
            raise SupervisorUnreachable(f"no supervisor answered at {address} within {timeout:g}s")
        frames = sock.recv_multipart()
        return reply_decoder.decode(frames[-1])
    finally:
        sock.close(linger=0)
