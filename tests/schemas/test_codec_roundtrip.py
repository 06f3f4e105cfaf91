"""The wire codec: every event round-trips, and nothing else decodes silently.

Strategies are derived from each event's field annotations, so a new event type
is covered as soon as it joins ``schemas.AnyEvent``; a field type this module
cannot generate fails ``test_every_event_type_has_a_strategy`` instead of
being skipped.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hexbus import codec
from schemas import (
    EVENT_TYPES,
    TAGS,
    ActorLifecycle,
    ChatMessage,
    Event,
    ProbeDurable,
    Reply,
    tag_of,
    type_for_topic,
)

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

int64s = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
floats = st.floats(allow_nan=False)  # NaN != NaN would make equality meaningless
texts = st.text(max_size=24)


class NoStrategy(TypeError):
    """A field annotation this module does not know how to generate."""


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for one annotation: the types schemas/ use, and nothing silently."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return int64s
    if tp is float:
        return floats
    if tp is str:
        return texts
    if tp is bytes:
        return st.binary(max_size=64)
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (Union, types.UnionType):
        return st.one_of(*(strategy_for(a) for a in args))
    if origin is dict and len(args) == 2:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=4)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return struct_strategy(tp)
    raise NoStrategy(f"no strategy for annotation {tp!r}")


def struct_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of ``cls``: every required field, and each defaulted field present or left out."""
    hints = typing.get_type_hints(cls)
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in msgspec.structs.fields(cls):
        strategy = strategy_for(hints[field.name])
        if field.required:
            required[field.name] = strategy
        else:
            optional[field.name] = strategy
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))


STRATEGIES: dict[type[Event], st.SearchStrategy[Any]] = {}
for _cls in EVENT_TYPES:
    try:
        STRATEGIES[_cls] = struct_strategy(_cls)
    except NoStrategy:
        pass  # reported by test_every_event_type_has_a_strategy


# Routing-key segments: printable ASCII without spaces or dots (the dots separate them).
segments = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="."),
    min_size=1,
    max_size=12,
)
routing_keys = st.lists(segments, max_size=4).map(".".join)
blobs = st.none() | st.binary(max_size=64)


def key_for(cls: type[Event], key: str) -> bool:
    """Whether ``key`` gives ``cls`` a valid topic that names ``cls`` (not a longer tag)."""
    tag = tag_of(cls)
    topic = f"{tag}.{key}" if key else tag
    return len(topic) <= codec.MAX_TOPIC_BYTES and type_for_topic(topic) is cls


# The envelope's counters are u64 on the journal's side; the codec admits 0 .. 2**63 - 1.
counts = st.integers(min_value=0, max_value=(1 << 63) - 1)


@st.composite
def envelopes(draw: st.DrawFn, cls: type[Event]) -> codec.Envelope:
    event = draw(STRATEGIES[cls])
    key = draw(routing_keys.filter(lambda k: key_for(cls, k)))
    envelope = codec.make_envelope(
        event,
        event_id=draw(texts),
        source=draw(texts),
        session=draw(counts),
        seq=draw(counts),
        key=key,
        causation=draw(texts),
        correlation=draw(texts),
    )
    return msgspec.structs.replace(
        envelope, wall=draw(floats), mono=draw(counts), offset=draw(counts)
    )


any_envelope = st.sampled_from(list(STRATEGIES)).flatmap(envelopes)


def envelope_of(event: Event, key: str = "") -> codec.Envelope:
    return codec.make_envelope(event, event_id="e1", source="test", key=key)


def frames_of(event: Event, key: str = "") -> list[bytes]:
    return codec.message_frames(envelope_of(event, key))


def rejection_kind(frames: list[Any]) -> str:
    with pytest.raises(codec.RejectedFrame) as info:
        codec.decode_message(frames)
    return info.value.kind


PROBE = ProbeDurable(n=1, note="hi")


# -- coverage -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__name__)
def test_every_event_type_has_a_strategy(cls: type[Event]) -> None:
    struct_strategy(cls)  # raises NoStrategy naming the annotation it cannot generate
    assert cls in STRATEGIES


def test_every_tag_names_exactly_one_event_type() -> None:
    assert len(TAGS) == len(EVENT_TYPES)
    assert all(isinstance(cls.__struct_config__.tag, str) for cls in EVENT_TYPES)


# -- round trip -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_event_type_round_trips_through_frames(cls: type[Event], data: st.DataObject) -> None:
    envelope = data.draw(envelopes(cls))
    blob = data.draw(blobs)
    frames = codec.message_frames(envelope, blob)
    assert len(frames) == (2 if blob is None else 3)
    decoded, decoded_blob = codec.decode_message(frames)
    assert decoded == envelope
    assert type(decoded.body) is cls
    assert decoded_blob == blob


@settings(max_examples=30, deadline=None)
@given(envelope=any_envelope, blob=st.binary(max_size=64))
def test_memoryview_frames_decode_like_bytes(envelope: codec.Envelope, blob: bytes) -> None:
    frames = [memoryview(f) for f in codec.message_frames(envelope, blob)]
    decoded, decoded_blob = codec.decode_message(frames)
    assert decoded == envelope
    assert decoded_blob is not None and bytes(decoded_blob) == blob


# -- nothing else decodes silently ---------------------------------------------------


def assert_rejected_or_valid(frames: list[bytes]) -> None:
    """``decode_message`` raises RejectedFrame, or what it accepted re-encodes to the same message."""
    try:
        envelope, blob = codec.decode_message(frames)
    except codec.RejectedFrame as exc:
        assert exc.kind in {"frames", "topic", "mismatch", "unknown_tag", "malformed", "oversized"}
        return
    except Exception as exc:
        pytest.fail(f"decode_message let {type(exc).__name__} escape: {exc!r}")
    assert type(envelope.body) in EVENT_TYPES
    assert frames[0] == envelope.topic.encode("ascii")
    assert blob == (frames[2] if len(frames) == 3 else None)
    again, again_blob = codec.decode_message(
        codec.message_frames(envelope, bytes(blob) if blob is not None else None)
    )
    # Compared as encodings: a NaN in a float field decodes fine but is never == itself.
    assert codec.encode(again) == codec.encode(envelope)
    assert again_blob == blob


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_random_bytes_are_rejected_or_a_valid_message(frames: list[bytes]) -> None:
    assert_rejected_or_valid(frames)


@settings(max_examples=200, deadline=None)
@given(
    topic=st.sampled_from(sorted(TAGS)).map(str.encode) | st.binary(max_size=32),
    envelope=st.binary(max_size=128),
    rest=st.lists(st.binary(max_size=8), max_size=2),
)
def test_known_topics_with_random_envelopes_are_rejected_or_valid(
    topic: bytes, envelope: bytes, rest: list[bytes]
) -> None:
    assert_rejected_or_valid([topic, envelope, *rest])


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted or deleted, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "insert":
            at = draw(st.integers(min_value=0, max_value=len(out)))
            out[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif not out:
            continue
        elif op == "flip":
            at = draw(st.integers(min_value=0, max_value=len(out) - 1))
            out[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif op == "delete":
            at = draw(st.integers(min_value=0, max_value=len(out) - 1))
            del out[at : at + draw(st.integers(min_value=1, max_value=4))]
        else:
            del out[draw(st.integers(min_value=0, max_value=len(out) - 1)) :]
    return bytes(out)


@settings(max_examples=400, deadline=None)
@given(envelope=any_envelope, blob=blobs, which=st.sampled_from([0, 1, 2]), data=st.data())
def test_mutated_valid_messages_are_rejected_or_valid(
    envelope: codec.Envelope, blob: bytes | None, which: int, data: st.DataObject
) -> None:
    frames = codec.message_frames(envelope, blob)
    if which == 2:  # frame count: drop or add a frame
        frames = frames[:1] + frames[2:] if data.draw(st.booleans()) else [*frames, b"x", b"y"][:4]
    else:
        frames[which] = data.draw(mutated(frames[which]))
    assert_rejected_or_valid(frames)


# -- specific rejections ---------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 4, 5])
def test_wrong_frame_count_is_rejected_as_frames(count: int) -> None:
    frames = [*frames_of(PROBE), b"", b"", b""][:count]
    assert rejection_kind(frames) == "frames"


@pytest.mark.parametrize(
    "topic",
    [
        b"",
        b"probe.durable." + b"k" * 242,
        "probe.durable.é".encode(),
        b"probe.durable.a b",
        b"probe.durable\x00",
        b"probe.durable\x7f",
        b"\xff\xfe",
    ],
    ids=["empty", "256-bytes", "non-ascii", "space", "nul", "del", "binary"],
)
def test_bad_topic_frame_is_rejected_as_topic(topic: bytes) -> None:
    _, envelope = frames_of(PROBE)
    assert rejection_kind([topic, envelope]) == "topic"


def test_topic_of_exactly_255_bytes_is_accepted() -> None:
    key = "k" * (codec.MAX_TOPIC_BYTES - len("probe.durable."))
    frames = frames_of(PROBE, key)
    assert len(frames[0]) == codec.MAX_TOPIC_BYTES
    envelope, _ = codec.decode_message(frames)
    assert envelope.topic == frames[0].decode()


def test_topic_frame_differing_from_envelope_topic_is_rejected_as_mismatch() -> None:
    _, envelope = frames_of(PROBE, "a")
    assert rejection_kind([b"probe.durable.b", envelope]) == "mismatch"
    assert rejection_kind([b"probe.durable", envelope]) == "mismatch"


@pytest.mark.parametrize(
    "topic", ["chat.message", "probe.volatile", "probe.durablex", "probe", "x.probe.durable"]
)
def test_topic_not_starting_with_the_body_tag_is_rejected_as_mismatch(topic: str) -> None:
    envelope = msgspec.structs.replace(envelope_of(PROBE), topic=topic)
    assert rejection_kind([topic.encode(), codec.encode(envelope)]) == "mismatch"


def test_body_on_the_topic_of_a_longer_tag_is_rejected_as_mismatch() -> None:
    # "chat.reply.chunk.x" names ReplyChunk (volatile); a Reply (durable) there would be
    # routed, journaled and dispatched as the wrong family.
    reply = Reply(reply_to="m1", channel="c", text="done")
    frames = frames_of(reply, "chunk.x")
    assert type_for_topic(frames[0].decode()) is not Reply
    assert rejection_kind(frames) == "mismatch"


def _raw_envelope(body: dict[str, Any], topic: str = "probe.durable") -> list[bytes]:
    raw = msgspec.to_builtins(envelope_of(PROBE))
    raw.update(topic=topic, body=body)
    return [topic.encode(), msgspec.msgpack.encode(raw)]


@pytest.mark.parametrize("tag", ["no.such.tag", "probe", "probe.durable.x", ""])
def test_unknown_tag_is_rejected_as_unknown_tag(tag: str) -> None:
    frames = _raw_envelope({"type": tag, "n": 1}, topic=tag or "probe.durable")
    assert rejection_kind(frames) == "unknown_tag"


@pytest.mark.parametrize(
    "body",
    [
        {"type": "probe.durable", "n": "one"},
        {"type": "probe.durable"},
        {"type": "probe.durable", "n": 1.5},
    ],
    ids=["wrong-field-type", "missing-field", "float-for-int"],
)
def test_known_tag_with_bad_fields_is_rejected_as_malformed(body: dict[str, Any]) -> None:
    assert rejection_kind(_raw_envelope(body)) == "malformed"


def test_unknown_body_fields_are_ignored_so_newer_senders_stay_readable() -> None:
    envelope, _ = codec.decode_message(
        _raw_envelope({"type": "probe.durable", "n": 3, "added_later": "x"})
    )
    assert envelope.body == ProbeDurable(n=3)


def test_bad_literal_value_is_rejected_as_malformed_not_unknown_tag() -> None:
    raw = msgspec.to_builtins(envelope_of(ActorLifecycle(actor="a", change="spawn"), "a.spawn"))
    raw["body"]["change"] = "teleport"
    assert rejection_kind([raw["topic"].encode(), msgspec.msgpack.encode(raw)]) == "malformed"


@pytest.mark.parametrize("cut", ["nothing-left", "one-byte", "half", "last-byte-missing"])
def test_truncated_msgpack_is_rejected_as_malformed(cut: str) -> None:
    topic, envelope = frames_of(
        ChatMessage(platform="web", person_id="p", display_name="P", channel="c", text="hi")
    )
    keep = {
        "nothing-left": 0,
        "one-byte": 1,
        "half": len(envelope) // 2,
        "last-byte-missing": len(envelope) - 1,
    }
    assert rejection_kind([topic, envelope[: keep[cut]]]) == "malformed"


def test_invalid_utf8_in_a_string_field_is_rejected_as_malformed() -> None:
    topic, envelope = frames_of(ProbeDurable(n=1, note="\u00e9"))
    broken = envelope.replace(
        "\u00e9".encode(), b"\xc3\x28"
    )  # a 2-byte str whose bytes are not UTF-8
    assert broken != envelope
    assert rejection_kind([topic, broken]) == "malformed"


def test_envelope_over_max_envelope_bytes_is_rejected_as_oversized() -> None:
    # Size the note so the encoded envelope is exactly MAX_ENVELOPE_BYTES (str32 header at this size).
    base = 1 << 17
    overhead = len(codec.encode(envelope_of(ProbeDurable(n=1, note="x" * base)))) - base
    exact = ProbeDurable(n=1, note="x" * (codec.MAX_ENVELOPE_BYTES - overhead))
    frames = frames_of(exact)
    assert len(frames[1]) == codec.MAX_ENVELOPE_BYTES
    codec.decode_message(frames)  # the limit itself is allowed
    over = frames_of(ProbeDurable(n=1, note="x" * (codec.MAX_ENVELOPE_BYTES - overhead + 1)))
    assert len(over[1]) == codec.MAX_ENVELOPE_BYTES + 1
    assert rejection_kind(over) == "oversized"


def test_blob_over_max_blob_bytes_is_rejected_as_oversized() -> None:
    buffer = bytearray(codec.MAX_BLOB_BYTES + 1)
    topic, envelope = frames_of(PROBE)
    assert rejection_kind([topic, envelope, memoryview(buffer)]) == "oversized"
    _, blob = codec.decode_message(
        [memoryview(topic), memoryview(envelope), memoryview(buffer)[:-1]]
    )
    assert blob is not None and len(blob) == codec.MAX_BLOB_BYTES


@given(
    field=st.sampled_from(["session", "seq", "mono", "offset"]),
    value=st.integers(min_value=INT64_MIN, max_value=-1)
    | st.integers(min_value=1 << 63, max_value=(1 << 64) - 1),
)
def test_envelope_counters_outside_u63_are_rejected_as_malformed(field: str, value: int) -> None:
    raw = msgspec.to_builtins(envelope_of(ProbeDurable(n=1)))
    raw[field] = value
    frames = [b"probe.durable", msgspec.msgpack.encode(raw)]
    with pytest.raises(codec.RejectedFrame) as info:
        codec.decode_message(frames)
    assert info.value.kind == "malformed"
