"""ZeroMQ plumbing shared by the broker, the bus client and the durable feed."""

from __future__ import annotations

import os
from typing import Any, Final

import zmq
import zmq.asyncio

from hexbus.endpoints import requires_curve, secure_client, secure_server

RECONNECT_MS: Final = 20
RECONNECT_MAX_MS: Final = 250


def client_socket(
    ctx: zmq.asyncio.Context, kind: int, address: str, curve_dir: str
) -> zmq.asyncio.Socket:
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.reconnect_ivl = RECONNECT_MS
    sock.reconnect_ivl_max = RECONNECT_MAX_MS
    if curve_dir and address.startswith("tcp://"):
        secure_client(sock, curve_dir)
    elif requires_curve(address):
        raise zmq.ZMQError(msg=f"{address} is not loopback and no CURVE keys are configured")
    return sock


def server_socket(
    ctx: zmq.Context[zmq.Socket[bytes]],
    kind: int,
    address: str,
    curve_dir: str,
    sndhwm: int,
    rcvhwm: int,
    maxmsgsize: int,
) -> zmq.Socket[bytes]:
    """A broker's listening socket. Options are set before bind: a listener copies them, and
    every accepted peer gets that copy."""
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    sock.linger = 0
    sock.sndhwm = sndhwm
    sock.rcvhwm = rcvhwm
    sock.maxmsgsize = maxmsgsize
    if curve_dir and address.startswith("tcp://"):
        secure_server(sock, curve_dir)
    if address.startswith("ipc://"):
        path = address[len("ipc://") :]
        if os.path.exists(path):
            os.unlink(path)  # a stale socket file from a killed broker
    sock.bind(address)
    return sock


async def readable(sock: zmq.asyncio.Socket, timeout_ms: int) -> bool:
    """Wait until ``sock`` has a message to read, or the timeout passes."""
    events = await sock.poll(timeout_ms, zmq.POLLIN)  # type: ignore[call-arg]
    return bool(events)


def sent(future: Any) -> bool:
    """Whether a NOBLOCK send went out (and mark its exception retrieved if not)."""
    return bool(future.done() and future.exception() is None)
