"""The one table that gives every topic family its delivery class."""

from __future__ import annotations

import functools
from enum import StrEnum


class Delivery(StrEnum):
    DURABLE = "durable"
    VOLATILE = "volatile"


# Longest matching prefix wins. Every event tag must resolve here
# (tests/schemas/test_delivery.py checks it), so adding a family means adding a row.
DELIVERY: dict[str, Delivery] = {
    "sys": Delivery.VOLATILE,  # heartbeats, control, pongs, metrics, rejected counters
    "sys.actor": Delivery.DURABLE,  # lifecycle: spawn, exit, restart, failed, error
    "sys.deadletter": Delivery.DURABLE,  # events an actor could not apply, and what became of them
    "sys.redrive": Delivery.DURABLE,  # apply a dead letter again
    "sys.bus.retention_cut": Delivery.DURABLE,  # events a subscriber lost to the retention cap
    "sys.audit": Delivery.DURABLE,  # control actions people took from an interface, and by whom
    "chat.message": Delivery.DURABLE,
    "chat.ack": Delivery.VOLATILE,
    "chat.reply": Delivery.DURABLE,
    "chat.reply.chunk": Delivery.VOLATILE,  # the final chat.reply carries the whole text
    "chat.sentence": Delivery.DURABLE,  # what TTS speaks: a lost sentence is a hole in the voice
    "chat.meta": Delivery.DURABLE,  # memory directives
    "chat.bargein": Delivery.DURABLE,
    "chat.notice": Delivery.DURABLE,
    "brain": Delivery.DURABLE,  # persona versions, quiet mode
    "brain.task": Delivery.VOLATILE,  # request/response with a deadline (summaries, contradiction checks)
    "brain.persona.get": Delivery.VOLATILE,  # request/response: a version's text and the list
    "brain.persona.state": Delivery.VOLATILE,
    "brain.persona.audit": Delivery.VOLATILE,  # a long request: a lost one is an audit not run
    "brain.persona.audited": Delivery.VOLATILE,
    "brain.usage": Delivery.VOLATILE,  # request/response: tokens and the backends' states
    "memory": Delivery.DURABLE,  # memory writes (the memory issue)
    "memory.query": Delivery.VOLATILE,  # request/response with a deadline: a loss is a timeout
    "memory.result": Delivery.VOLATILE,
    "memory.review": Delivery.VOLATILE,  # request/response, like queries
    "memory.reviewed": Delivery.VOLATILE,
    "memory.export": Delivery.VOLATILE,  # request/response: the lines travel in the answer's blob
    "memory.exported": Delivery.VOLATILE,
    "memory.history": Delivery.VOLATILE,  # request/response: a conversation's stored turns
    "memory.progress": Delivery.VOLATILE,  # how far a long request has got: a bar, never state
    "vision": Delivery.VOLATILE,  # frames and observations: only the latest matters
    "vision.moment": Delivery.DURABLE,  # arrived, left, a mood that held: the brain must not miss one
    "perception": Delivery.DURABLE,  # pause / resume: a privacy switch is never lost
    "perception.state": Delivery.VOLATILE,  # the indicator: republished every few seconds
    "perception.status": Delivery.VOLATILE,  # request/response: the state now
    "audio": Delivery.VOLATILE,  # frames in, speech out: late audio is worthless; sentences are durable
    "stt.partial": Delivery.VOLATILE,
    "stt.final": Delivery.DURABLE,  # a transcript is what the person said: never lost
    "stt.segment": Delivery.DURABLE,  # an ended utterance's audio, until it is transcribed
    "stt.speech": Delivery.VOLATILE,  # speech started: barge-in, now or never
    "tts": Delivery.VOLATILE,  # speaking / stopped
    "metrics": Delivery.VOLATILE,
    "capability": Delivery.DURABLE,  # the owner's switches: an actor must never miss one
    "autonomy": Delivery.VOLATILE,  # request/response: what waits to be said first, and why
    "discord.dm": Delivery.VOLATILE,  # request/response: the DM channel to write to first
    "discord.presence": Delivery.VOLATILE,  # a member's status: the next change says it again
    "selfmod": Delivery.DURABLE,  # proposals, requests, decisions, their changes: never lost
    "selfmod.ask": Delivery.VOLATILE,  # request/response: the list, one proposal, a diff
    "selfmod.report": Delivery.VOLATILE,
    "plugin": Delivery.DURABLE,  # installs, removals and failures: what runs must be known
    "plugin.note": Delivery.VOLATILE,  # a line for the next reply: fresh or worthless
    "probe.durable": Delivery.DURABLE,
    "probe.volatile": Delivery.VOLATILE,
}


@functools.lru_cache(maxsize=8192)  # topics repeat: every publish and every receive asks
def delivery_of(topic: str) -> Delivery:
    """The delivery class of a topic (its tag plus any routing key)."""
    best = ""
    for prefix in DELIVERY:
        if len(prefix) > len(best) and (topic == prefix or topic.startswith(prefix + ".")):
            best = prefix
    if not best:
        raise KeyError(
            f"topic {topic!r} has no delivery class: add its family to schemas.delivery.DELIVERY"
        )
    return DELIVERY[best]


# Requests that change or reveal what Hex is and remembers, or that speak as a person: the broker
# accepts them only from origins in ``bus.privileged_origins`` (default: this host alone) and,
# a family at a time, from hosts ``bus.origin_grants`` names (hexbus/origins.py).
PRIVILEGED: tuple[str, ...] = (
    "sys.control",  # stop, ping, snapshot, reload an actor
    "sys.redrive",  # apply a dead letter again
    "sys.audit",  # who took a control action: only this host's interfaces write that record
    "memory",  # every memory request: add, edit, approve, forget, import, upload, export, search
    "chat.message",  # a person's words, with the person id discord_io or the console verified
    "chat.meta",  # memory directives about a person
    "chat.reply",  # Hex's words: posted to people, kept in memory as what she said
    "chat.notice",  # posted to people
    "brain",  # persona versions, quiet mode, the brain's tasks
    "perception.pause",  # the camera's switch: off, and on again, only from a trusted origin
    "perception.resume",
    "vision.preview",  # a lease on the camera's pictures
    "selfmod",  # proposals and the owner's decisions on them: this host's actors and terminals
    "plugin",  # code that runs, and what it tells the brain
    "capability",  # the switches are the supervisor's to announce
)


@functools.lru_cache(maxsize=8192)
def privileged(topic: str) -> bool:
    """Whether only a privileged origin may publish this topic."""
    return any(topic == p or topic.startswith(p + ".") for p in PRIVILEGED)
