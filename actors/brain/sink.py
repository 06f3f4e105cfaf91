"""A reply as the bus sees it: streamed chunks and sentences, the final reply, its metrics.

:class:`BusReplySink` is the :class:`~actors.brain.reply.ReplySink` the actor gives
each :class:`~actors.brain.reply.ReplyRun`, over the bus and the actor's publish
passed in; :func:`final_reply` and :func:`usage_metrics` build the events that end
a reply.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from actors.brain.backends.fallback import FallbackEvent
from actors.brain.config import PendingMessage, UsageRow
from actors.brain.reply import ReplyOutcome
from hexbus.bus import BusClient
from hexbus.codec import Envelope, derived_id
from schemas import (
    BackendState,
    BrainUsageReport,
    ChatMessage,
    Metric,
    Notice,
    Reply,
    ReplyChunk,
    ReplySentence,
    UsageLine,
)


def final_reply(event_id: str, message: ChatMessage, outcome: ReplyOutcome) -> Reply:
    return Reply(
        reply_to=event_id,
        channel=message.channel,
        text=outcome.text,
        status=outcome.status,
        platform=message.platform,
        person_id=message.person_id,
        backend=outcome.backend,
        fallbacks=outcome.fallbacks,
        recalled=outcome.recalled,
    )


def usage_metrics(message: PendingMessage, outcome: ReplyOutcome) -> list[Metric]:
    """Tokens and timings of a complete reply, per backend and person."""
    usage = outcome.usage
    labels = {
        "backend": outcome.backend,
        "person": message.message.person_id,
        "reply_to": message.event_id,
    }
    return [
        Metric(name=name, value=float(value), unit=unit, labels=labels)
        for name, value, unit in (
            ("brain.tokens.prompt", usage.prompt_tokens, "tokens"),
            ("brain.tokens.completion", usage.completion_tokens, "tokens"),
            ("brain.first_token", usage.time_to_first_token_s * 1000, "ms"),
            ("brain.generation", usage.seconds * 1000, "ms"),
        )
    ]


Publish = Callable[..., Awaitable[Envelope]]


class BusReplySink:
    """Where one reply's :class:`ReplyRun` output goes on the bus.

    Chunks are volatile (the first one with the first-chunk latency metric); sentences
    are durable, with ids of this attempt, so an answer repeated after a crash is spoken
    again; a fallback to a rate-limited backend's successor gets the "sleepy" notice.
    """

    def __init__(
        self,
        bus: BusClient,
        publish: Publish,
        message: PendingMessage,
        progressed: Callable[[], None] = lambda: None,
    ) -> None:
        self.bus = bus
        self.publish = publish
        self.message = message
        self.progressed = progressed  # words are flowing: the work is slow, not hung
        self.attempt = f"{bus.session:x}-{time.monotonic_ns()}"

    def chunk(self, index: int, text: str) -> None:
        self.progressed()
        event, reply_to = self.message.message, self.message.event_id
        self.bus.publish_volatile(
            ReplyChunk(reply_to=reply_to, channel=event.channel, index=index, text=text),
            key=event.platform,
        )
        if index == 0:  # the moment the first words exist: a stage of the voice latency breakdown
            self.bus.publish_volatile(
                Metric(
                    name="brain.first_chunk",
                    value=round((time.time() - self.message.received) * 1000, 1),
                    unit="ms",
                    labels={"reply_to": reply_to},
                ),
                key="brain",
            )

    async def sentence(self, index: int, text: str) -> None:
        event, reply_to = self.message.message, self.message.event_id
        await self.publish(
            ReplySentence(
                reply_to=reply_to,
                channel=event.channel,
                platform=event.platform,
                person_id=event.person_id,
                index=index,
                text=text,
            ),
            key=event.platform,
            event_id=derived_id(reply_to, self.attempt, "sentence", str(index)),
            causation=reply_to,
        )

    async def fallback(self, event: FallbackEvent) -> None:
        if not event.overloaded:
            return
        message = self.message.message
        await self.publish(
            Notice(
                channel=message.channel,
                platform=message.platform,
                kind="sleepy",
                text=f"*yawns* {event.from_name} is out of juice; "
                f"thinking with {event.to_name} instead.",
            ),
            key=message.platform,
        )


def usage_report(
    usage: Mapping[str, UsageRow], backends: list[BackendState], days: int
) -> BrainUsageReport:
    """Tokens per day, backend and person over the last ``days`` (keys "YYYY-MM-DD|backend|person"),
    and the backends' states."""
    span = max(1, min(days, 366)) - 1
    since = time.strftime("%Y-%m-%d", time.localtime(time.time() - span * 86400))
    lines = []
    for key, row in sorted(usage.items()):
        day, backend, person = [*key.split("|", 2), "", ""][:3]
        if day >= since:
            lines.append(
                UsageLine(
                    day=day,
                    backend=backend,
                    person=person,
                    prompt_tokens=row.prompt_tokens,
                    completion_tokens=row.completion_tokens,
                    replies=row.replies,
                )
            )
    return BrainUsageReport(lines=tuple(lines), backends=tuple(backends))
