"""hexbus: Hex's actor runtime over ZeroMQ.

Public API: :class:`Actor` and :func:`on` for writing actors, :class:`BusClient`
for talking to the bus from any asyncio program, :class:`LazyModel` for models
an actor loads, and :mod:`hexbus.testing` for unit-testing actors without processes.
"""

from hexbus.actor import Actor, ActorUnusable, NoConfig, NoState, RequestTimeout, on
from hexbus.bus import BusClient
from hexbus.codec import Envelope, RejectedFrame
from hexbus.models import LazyModel, ModelMissing

__all__ = [
    "Actor",
    "ActorUnusable",
    "BusClient",
    "Envelope",
    "LazyModel",
    "ModelMissing",
    "NoConfig",
    "NoState",
    "RejectedFrame",
    "RequestTimeout",
    "on",
]
