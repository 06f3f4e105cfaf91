"""The wire format: envelopes, frames, and strict decoding.

A bus message is ``[topic, envelope]`` or ``[topic, envelope, blob]``. The
envelope is msgpack from one process-wide encoder; the blob travels untouched.
Decoding is strict: anything that is not exactly a known event raises
:class:`RejectedFrame`, which callers count and drop.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from typing import Annotated, Final

import msgspec

from schemas import AnyEvent, Event, tag_of, type_for_topic

MAX_TOPIC_BYTES: Final = 255
MAX_ENVELOPE_BYTES: Final = 1 << 20
MAX_BLOB_BYTES: Final = 16 << 20  # the default of bus.max_blob_mb, which every process is given
MAX_REASON_BYTES: Final = 1024  # of a refusal's reason


# msgpack integers may be negative or too wide for the journal's u64 fields: reject them at decode time.
Count = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the bus knows about one event, around the event itself."""

    id: str
    topic: str
    source: str
    session: Count = 0  # the producer's incarnation; (session, seq) is the dedup key
    seq: Count = 0  # per-session sequence, durable events only
    wall: float = 0.0  # unix seconds at the source
    mono: Count = 0  # time.monotonic_ns() at the source
    causation: str = ""  # id of the event this one answers or was caused by
    correlation: str = ""  # request/response pairing
    offset: Count = 0  # global journal offset, stamped by the broker on durable events
    # Who published a durable event, stamped by the broker from its connection: the admitted
    # host's key name (hexbus keys add-host), or "local" (this host's key, or the 0700 ipc run
    # directory). Whatever a producer puts here is overwritten. Volatile events carry what their
    # publisher wrote: nothing should trust it there.
    origin: str = ""
    body: AnyEvent


class RejectedFrame(Exception):
    """A frame that is not a valid bus message. ``kind`` names the counter."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Envelope)


def derived_id(*parts: str) -> str:
    """A stable event id from what the event derives from: the same parts, the same id (idempotent re-sends)."""
    return hashlib.blake2b("/".join(parts).encode(), digest_size=12).hexdigest()


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(data: bytes | memoryview) -> Envelope:
    """Decode one envelope strictly, raising :class:`RejectedFrame`."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise RejectedFrame("oversized", f"envelope of {len(data)} bytes")
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "$.body.type" in text or ("Invalid value" in text and "type" in text):
            raise RejectedFrame("unknown_tag", text) from None
        raise RejectedFrame("malformed", text) from None
    except msgspec.DecodeError as exc:
        raise RejectedFrame("malformed", str(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec raises it bare for bad UTF-8 inside a string
        raise RejectedFrame("malformed", str(exc)) from None


def check_topic(topic: bytes | memoryview) -> str:
    if not 0 < len(topic) <= MAX_TOPIC_BYTES:
        raise RejectedFrame("topic", f"topic of {len(topic)} bytes")
    try:
        text = bytes(topic).decode("ascii")
    except UnicodeDecodeError:
        raise RejectedFrame("topic", "topic is not ASCII") from None
    if not text.isprintable() or " " in text:
        raise RejectedFrame("topic", "topic has spaces or control characters")
    return text


_topic_types: dict[str, type[Event] | None] = {}


def _topic_type(topic: str) -> type[Event] | None:
    """The event type a topic names (its longest matching tag), cached: topics repeat."""
    found = _topic_types.get(topic, Event)
    if found is Event:
        if len(_topic_types) > 8192:
            _topic_types.clear()
        found = _topic_types[topic] = type_for_topic(topic)
    return found


def decode_message(
    frames: list[bytes] | list[memoryview], max_blob: int = MAX_BLOB_BYTES
) -> tuple[Envelope, bytes | memoryview | None]:
    """Validate and decode ``[topic, envelope(, blob)]``; a blob may have ``max_blob`` bytes
    (bus.max_blob_mb: the broker, producers and subscribers are all given the same number)."""
    if not 2 <= len(frames) <= 3:
        raise RejectedFrame("frames", f"{len(frames)} frames")
    topic = check_topic(frames[0])
    envelope = decode(frames[1])
    if envelope.topic != topic:
        raise RejectedFrame(
            "mismatch", f"frame topic {topic!r} != envelope topic {envelope.topic!r}"
        )
    if _topic_type(topic) is not type(envelope.body):
        raise RejectedFrame(
            "mismatch", f"topic {topic!r} does not name a {type(envelope.body).__name__}"
        )
    blob: bytes | memoryview | None = None
    if len(frames) == 3:
        blob = frames[2]
        if len(blob) > max_blob:
            raise RejectedFrame(
                "oversized",
                f"blob of {len(blob) / (1 << 20):.1f} MiB is over the bus's limit of "
                f"{max_blob / (1 << 20):g} MiB (bus.max_blob_mb)",
            )
    return envelope, blob


class Head(msgspec.Struct, frozen=True):
    """What identifies a durable event, read from an envelope that may not decode whole (a tag
    this process does not know, a field of the wrong type): enough to refuse it by name."""

    id: str = ""
    topic: str = ""
    session: Count = 0
    seq: Count = 0


_head_decoder: Final = msgspec.msgpack.Decoder(Head)


def peek(data: bytes | memoryview) -> Head | None:
    """The :class:`Head` of an encoded envelope, or ``None`` if not even that decodes."""
    try:
        return _head_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None


def message_frames(envelope: Envelope, blob: bytes | None = None) -> list[bytes]:
    out = [envelope.topic.encode("ascii"), encode(envelope)]
    if blob is not None:
        out.append(blob)
    return out


class IdSource:
    """Cheap unique event ids: a random 64-bit session prefix and a counter."""

    def __init__(self, session: int) -> None:
        self.prefix = f"{session:016x}"
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n:x}"


def new_session() -> int:
    """A random, non-zero 63-bit producer incarnation."""
    return (int.from_bytes(os.urandom(8), "little") >> 1) or 1


def make_envelope(
    event: Event,
    *,
    event_id: str,
    source: str,
    session: int = 0,
    seq: int = 0,
    key: str = "",
    causation: str = "",
    correlation: str = "",
) -> Envelope:
    tag = tag_of(type(event))
    topic = f"{tag}.{key}" if key else tag
    return Envelope(
        id=event_id,
        topic=topic,
        source=source,
        session=session,
        seq=seq,
        wall=time.time(),
        mono=time.monotonic_ns(),
        causation=causation,
        correlation=correlation,
        body=event,  # type: ignore[arg-type]
    )


# Control frames between producers/subscribers and the broker's ROUTER endpoints.
U64: Final = struct.Struct("<Q")
U64x2: Final = struct.Struct("<QQ")

PUBLISH: Final = b"P"  # [P, floor u64, topic, envelope(, blob)]
ACK: Final = b"A"  # [A, session u64 + seq u64] cumulative
NACK: Final = b"N"  # [N, session u64 + expected u64]
REFUSE: Final = (
    b"X"  # [X, session u64 + seq u64, reason utf-8]: that seq never stored, the ones below done
)
HOLD: Final = (
    b"H"  # [H, session u64 + seq u64, reason utf-8]: the broker cannot store it now; keep it
)
FETCH: Final = b"F"  # [F, FetchRequest]
BATCH: Final = b"R"  # [R, FetchReply, (topic, envelope, blob|b"") * count]


class FetchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Ask the replay endpoint for durable events after an offset.

    With ``wait_ms`` the broker parks the request until a matching event
    arrives or the wait ends, which makes live delivery a long poll.
    """

    req: int
    after: int
    prefixes: list[str]
    max_events: int = 512
    max_bytes: int = 4 << 20
    wait_ms: int = 0
    consumer: str = ""  # an actor's name: the broker keeps what it has not applied (retention)
    saved: int = -1  # the offset that actor resumes after if it dies now (-1: not one)
    epoch: str = ""  # the journal history ``after`` and ``saved`` belong to ("": not known)


class FetchReply(msgspec.Struct, frozen=True, kw_only=True):
    req: int
    next_after: int  # every matching event at or below this offset is in this reply or before it
    head: int  # the journal's last offset
    first: int  # the first offset still retained
    count: int
    incarnation: str = ""
    epoch: str = ""  # the journal's history (hexbus.epoch): a new one means history was lost
    # Where the history after the request's epoch began (the current epoch's start when the
    # request's is current): its first offset, and after which offset records were lost.
    epoch_first: int = 0
    lost_after: int = 0
    retained_after: int = 0  # retention deleted every record up to this offset
    # Events in this reply whose blob is gone (past bus.journal.blob_retention_cap_mb, or a
    # damaged file): sent without it, not to be applied as if it had none.
    lost_blobs: tuple[int, ...] = ()


_fetch_req_encoder: Final = msgspec.msgpack.Encoder()
fetch_request_decoder: Final = msgspec.msgpack.Decoder(FetchRequest)
fetch_reply_decoder: Final = msgspec.msgpack.Decoder(FetchReply)


def encode_control(obj: FetchRequest | FetchReply) -> bytes:
    return _fetch_req_encoder.encode(obj)
