"""Helpers for tests that talk to a running Hex through the real client API."""

from __future__ import annotations

import asyncio
from typing import Any

from hexbus.bus import BusClient
from hexbus.endpoints import Endpoints
from schemas import ProbeVolatile


async def ask_probe(
    endpoints: Endpoints, name: str, key: str, question: str, timeout: float = 1.0
) -> ProbeVolatile | None:
    """Ask a diag actor ``question`` (a ProbeVolatile note, to topic ``probe.volatile.KEY``);
    its answer, or None if none came within ``timeout``."""
    client = BusClient(endpoints, name)
    client.start()
    client.subscribe(f"probe.volatile.{name}")
    try:
        await asyncio.sleep(0.2)  # let the subscription reach the broker
        client.publish_volatile(ProbeVolatile(n=0, note=question), key=key, correlation="q")

        async def first() -> Any:
            async for envelope, _ in client.volatile():
                if envelope.correlation == "q" and isinstance(envelope.body, ProbeVolatile):
                    return envelope.body

        try:
            answer: ProbeVolatile = await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            return None
        return answer
    finally:
        await client.close()


async def ask_count(
    endpoints: Endpoints, name: str = "asker", timeout: float = 1.0
) -> tuple[int, int] | None:
    """Ask the CounterActor for its count and the sum of the numbers it counted; None if no answer."""
    body = await ask_probe(endpoints, name, "count", "count?", timeout)
    if body is None:
        return None
    return body.n, int(body.note.removeprefix("total="))
