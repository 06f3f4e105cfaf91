"""``hexbus send TOPIC JSON``: publish one event after validating it against its schema."""

from __future__ import annotations

import asyncio

import msgspec

from hexbus.bus import BusClient
from hexbus.endpoints import Endpoints
from schemas import TAGS, Delivery, delivery_of, tag_of, type_for_topic


class SendError(Exception):
    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


async def send(endpoints: Endpoints, topic: str, text: str, *, timeout: float = 5.0) -> str:
    event_type = type_for_topic(topic)
    if event_type is None:
        raise SendError(
            f"no event type for topic {topic!r}; known tags: {', '.join(sorted(TAGS))}", usage=True
        )
    try:
        event = msgspec.json.decode(text, type=event_type)
    except msgspec.ValidationError as exc:
        raise SendError(
            f"{topic}: {exc} (fields of {event_type.__name__}: "
            f"{', '.join(f for f in event_type.__struct_fields__)})",
            usage=True,
        ) from None
    except msgspec.DecodeError as exc:
        raise SendError(f"{topic}: not valid JSON: {exc}", usage=True) from None
    tag = tag_of(event_type)
    key = topic[len(tag) + 1 :] if topic != tag else ""
    client = BusClient(endpoints, "cli")
    client.start()
    try:
        if delivery_of(topic) is Delivery.DURABLE:
            envelope = await client.publish_durable(event, key=key)
            if not await client.flush(timeout):
                raise SendError(
                    f"the broker did not acknowledge {envelope.id} within {timeout:g}s; is Hex running?"
                )
            return f"sent {envelope.topic} {envelope.id} (durable, acknowledged)"
        await asyncio.sleep(
            0.3
        )  # a fresh PUB socket drops what it sends before the broker subscribes
        envelope = client.publish_volatile(event, key=key)
        await asyncio.sleep(0.05)
        return f"sent {envelope.topic} {envelope.id} (volatile)"
    finally:
        await client.close()
