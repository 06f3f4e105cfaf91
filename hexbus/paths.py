"""The check an actor's first request of a kind makes before it goes (:meth:`Actor.request`):
that the subscription to its answers has left the broker for every publisher.

A ZeroMQ subscription travels on its own (the requester's SUB, the broker's XPUB, its lane
thread, its XSUB, each publisher's PUB), and a responder's PUB drops an answer published
before it has the requester's subscription. A message to itself on a fresh topic, subscribed
behind the answer's, that comes back says the broker forwarded the answer's subscription first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hexbus.bus import BusClient
from hexbus.codec import Envelope
from schemas import PathCheck, tag_of

PATH_CHECK_S = 0.005  # how often the check is sent again until it comes back (a few ms)
PATH_OPEN_S = 10.0  # given up after this long (the broker down): the request then times out


async def open_path(
    bus: BusClient,
    pending: dict[str, asyncio.Future[tuple[Envelope, bytes | None]]],
    topic: str,
    blob_lane: bool,
    log: Any,
) -> bool:
    """Whether ``topic``'s subscription (made just before) is through the broker: a check on
    each lane (``blob_lane``: the blob lane's as well, where large answers go) came back.
    ``pending``: the actor's answers by correlation, which its runtime resolves."""
    if not bus.subscriptions_travel:
        return True  # an in-memory bus: subscribed is in place
    key = f"{bus.name}.{bus.ids.next()}"
    probe = f"{tag_of(PathCheck)}.{key}"
    bus.subscribe(probe)
    loop = asyncio.get_running_loop()
    # One check per lane; the blob lane's carries a blob as large as that lane's least.
    blobs = [None, bytes(bus.blob_lane_bytes)] if blob_lane else [None]
    checks = {bus.ids.next(): (blob, loop.create_future()) for blob in blobs}
    for correlation, (_, future) in checks.items():
        pending[correlation] = future
    give_up = loop.time() + PATH_OPEN_S
    try:
        while loop.time() < give_up:
            waiting = [(c, b, f) for c, (b, f) in checks.items() if not f.done()]
            if not waiting:
                break
            for correlation, blob, _ in waiting:
                bus.publish_volatile(PathCheck(), key=key, blob=blob, correlation=correlation)
            await asyncio.wait({f for _, _, f in waiting}, timeout=PATH_CHECK_S)
    finally:
        for correlation in checks:
            pending.pop(correlation, None)
        bus.unsubscribe(probe)
    confirmed = all(f.done() for _, f in checks.values())
    if not confirmed:
        log.warning("bus.path_unconfirmed", topic=topic, waited_s=PATH_OPEN_S)
    return confirmed


__all__ = ["PATH_CHECK_S", "PATH_OPEN_S", "open_path"]
