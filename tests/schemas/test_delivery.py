"""Delivery classes: every tag has one, routing keys inherit it, and the design's contract holds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    CONTROL_TAGS,
    EVENT_TYPES,
    TAGS,
    ActorLifecycle,
    BrokerHeartbeat,
    ChatAck,
    ChatMessage,
    Delivery,
    Event,
    Heartbeat,
    Metric,
    Ping,
    ProbeDurable,
    ProbeVolatile,
    Reload,
    Reply,
    ReplyChunk,
    Snapshot,
    Stop,
    delivery_of,
    tag_of,
    type_for_topic,
)

DURABLE, VOLATILE = Delivery.DURABLE, Delivery.VOLATILE


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_every_tag_has_a_delivery_class(tag: str) -> None:
    assert delivery_of(tag) in (DURABLE, VOLATILE)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("chat.reply.chunk.x", VOLATILE),
        ("chat.reply.chunk", VOLATILE),
        ("chat.reply.x", DURABLE),
        ("chat.reply", DURABLE),
        ("chat.message.discord.1234", DURABLE),
        ("chat.ack.web", VOLATILE),
        ("sys.actor.brain.spawn", DURABLE),
        ("sys.actor", DURABLE),
        ("sys.heartbeat.brain", VOLATILE),
        ("sys.broker.heartbeat", VOLATILE),
        ("sys.control.stop.brain", VOLATILE),
        ("sys.actorx", VOLATILE),  # not under sys.actor: only the "sys" row matches
        ("probe.durable.k", DURABLE),
        ("probe.volatile.k", VOLATILE),
    ],
)
def test_routing_keys_inherit_their_family_class(topic: str, expected: Delivery) -> None:
    assert delivery_of(topic) is expected


@pytest.mark.parametrize(
    "topic", ["", "chat", "chatx.message", "chat.messagex", "nope.x", "probe", "sy"]
)
def test_unknown_family_raises_key_error_naming_the_delivery_table(topic: str) -> None:
    with pytest.raises(KeyError) as info:
        delivery_of(topic)
    message = info.value.args[0]
    assert "schemas.delivery.DELIVERY" in message
    assert repr(topic) in message


segments = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="."),
    min_size=1,
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(
    cls=st.sampled_from(EVENT_TYPES), key=st.lists(segments, min_size=1, max_size=4).map(".".join)
)
def test_a_routing_key_never_changes_an_events_class(cls: type[Event], key: str) -> None:
    topic = f"{tag_of(cls)}.{key}"
    if type_for_topic(topic) is cls:  # a key that spells a longer tag names another event
        assert delivery_of(topic) is delivery_of(tag_of(cls))


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("chat.reply.chunk.x", ReplyChunk),
        ("chat.reply.chunk", ReplyChunk),
        ("chat.reply.x", Reply),
        ("chat.reply", Reply),
        ("chat.replyx", None),
        ("chat.reply.chunkx", Reply),
        ("sys.actor.brain.spawn", ActorLifecycle),
        ("sys.broker.heartbeat", BrokerHeartbeat),
        ("sys.heartbeat.broker", Heartbeat),
        ("sys.control.ping.echo", Ping),
        ("sys", None),
        ("", None),
        ("probe.durable", ProbeDurable),
    ],
)
def test_type_for_topic_picks_the_longest_tag(topic: str, expected: type[Event] | None) -> None:
    assert type_for_topic(topic) is expected


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__name__)
def test_type_for_topic_finds_every_event_by_its_tag(cls: type[Event]) -> None:
    assert type_for_topic(tag_of(cls)) is cls
    assert type_for_topic(f"{tag_of(cls)}.some-key") is cls


def test_control_tags_are_exactly_the_sys_control_tags() -> None:
    assert {tag_of(c) for c in (Stop, Ping, Snapshot, Reload)} == CONTROL_TAGS
    assert frozenset(t for t in TAGS if t.startswith("sys.control.")) == CONTROL_TAGS
    assert all(t.startswith("sys.control.") for t in CONTROL_TAGS)


# DESIGN.md, "Delivery": durable for chat messages, final replies, lifecycle; volatile for
# heartbeats, metrics, partial output and acks. A change here rewrites the journal's contract.
CONTRACT: dict[type[Event], Delivery] = {
    ActorLifecycle: DURABLE,
    ChatMessage: DURABLE,
    Reply: DURABLE,
    ProbeDurable: DURABLE,
    Heartbeat: VOLATILE,
    BrokerHeartbeat: VOLATILE,
    Metric: VOLATILE,
    ReplyChunk: VOLATILE,
    ChatAck: VOLATILE,
    ProbeVolatile: VOLATILE,
}


@pytest.mark.parametrize(
    ("cls", "expected"), CONTRACT.items(), ids=lambda v: getattr(v, "__name__", str(v))
)
def test_event_families_keep_the_designs_delivery_class(
    cls: type[Event], expected: Delivery
) -> None:
    assert delivery_of(tag_of(cls)) is expected


@pytest.mark.parametrize("change", ["spawn", "exit", "restart", "failed", "error"])
def test_lifecycle_events_are_durable_for_every_actor_and_change(change: str) -> None:
    assert delivery_of(f"{tag_of(ActorLifecycle)}.brain.{change}") is DURABLE


@pytest.mark.parametrize("actor", ["brain", "broker", "supervisor", "a-b_c"])
def test_heartbeats_are_volatile_for_every_process(actor: str) -> None:
    assert delivery_of(f"{tag_of(Heartbeat)}.{actor}") is VOLATILE
