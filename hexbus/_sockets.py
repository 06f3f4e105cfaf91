"""ZeroMQ plumbing shared by the bus client and the durable feed."""

from __future__ import annotations

from typing import Any, Final

import zmq
import zmq.asyncio

from hexbus.endpoints import requires_curve, secure_client

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


async def readable(sock: zmq.asyncio.Socket, timeout_ms: int) -> bool:
    """Wait until ``sock`` has a message to read, or the timeout passes."""
    events = await sock.poll(timeout_ms, zmq.POLLIN)  # type: ignore[call-arg]
    return bool(events)


def sent(future: Any) -> bool:
    """Whether a NOBLOCK send went out (and mark its exception retrieved if not)."""
    return bool(future.done() and future.exception() is None)
