"""Seeded frame generators and broker sockets shared by tests/hexbus/test_fuzz_*.py."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import zmq

from hexbus import codec
from hexbus.bus import BusClient
from schemas import ProbeDurable, ProbeVolatile
from tests.support.harness import Hex

SEED = 0x4E58_F022
TOTAL = 100_000
MP = msgspec.msgpack.Encoder()


OVERSIZED_BLOB = codec.MAX_BLOB_BYTES + 1


# -- generators ------------------------------------------------------------------------------------


def frame_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.7:
        return rng.randrange(0, 48)
    if roll < 0.97:
        return rng.randrange(48, 512)
    return rng.randrange(512, 4096)


def random_frames(rng: random.Random, lo: int = 1, hi: int = 5) -> list[bytes]:
    return [rng.randbytes(frame_size(rng)) for _ in range(rng.randint(lo, hi))]


def envelope_dict(rng: random.Random, topic: str, body: Any, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": f"fz{rng.getrandbits(48):x}",
        "topic": topic,
        "source": "fuzz",
        "body": body,
    }
    data.update(extra)
    return data


def valid_frames(
    rng: random.Random,
    event: Any,
    *,
    key: str = "",
    session: int = 0,
    seq: int = 0,
    offset: int = 0,
) -> list[bytes]:
    envelope = codec.make_envelope(
        event,
        event_id=f"fz{rng.getrandbits(48):x}",
        source="fuzz",
        session=session,
        seq=seq,
        key=key,
    )
    if offset:
        envelope = msgspec.structs.replace(envelope, offset=offset)
    return codec.message_frames(envelope)


def near_miss(rng: random.Random, topic: str = "probe.volatile.fz") -> list[bytes]:
    """A ``[topic, envelope(, blob)]`` message that looks close to valid but must be rejected.

    ``topic`` is the frame topic most variants use (so a SUB's prefix filter lets them through).
    """
    t = topic.encode()
    good = valid_frames(
        rng, ProbeVolatile(n=rng.randrange(1 << 30), note="near"), key=topic.split(".", 2)[-1]
    )
    good[0] = t
    good_env = MP.encode(envelope_dict(rng, topic, {"type": "probe.volatile", "n": 1}))
    kind = rng.randrange(15)
    if kind == 0:  # valid msgpack, wrong shape
        shape = rng.choice(
            [{}, [1, 2, 3], "envelope", 7, None, {"id": 1}, {"topic": topic}, [topic, {}], b"\x00"]
        )
        return [t, MP.encode(shape)]
    if kind == 1:  # an envelope without a body
        return [t, MP.encode({"id": "a", "topic": topic, "source": "fuzz"})]
    if kind == 2:  # a body with a tag nobody knows
        return [
            t,
            MP.encode(
                envelope_dict(
                    rng, topic, {"type": rng.choice(["no.such.tag", "probe", "", "sys"]), "n": 1}
                )
            ),
        ]
    if kind == 3:  # a known tag with fields of the wrong type
        body = rng.choice(
            [
                {"type": "probe.volatile", "n": "one"},
                {"type": "probe.volatile"},
                {"type": "probe.volatile", "n": 1, "sent_ns": 1.5},
                {"type": "sys.heartbeat", "actor": "x", "pid": 1, "state": "dancing"},
            ]
        )
        return [t, MP.encode(envelope_dict(rng, topic, body))]
    if kind == 4:  # frame topic and envelope topic disagree
        return [
            t,
            MP.encode(envelope_dict(rng, topic + ".other", {"type": "probe.volatile", "n": 1})),
        ]
    if kind == 5:  # the topic does not start with the body's tag
        return [
            t,
            MP.encode(
                envelope_dict(
                    rng,
                    topic,
                    {
                        "type": "chat.reply.chunk",
                        "reply_to": "x",
                        "channel": "c",
                        "index": 0,
                        "text": "t",
                    },
                )
            ),
        ]
    if kind == 6:  # a truncated valid envelope
        return [t, good[1][: rng.randrange(len(good[1]))]]
    if kind == 7:  # trailing bytes after a valid envelope
        return [t, good[1] + rng.randbytes(rng.randint(1, 8))]
    if kind == 8:  # a bad topic frame (empty, too long, not ASCII, a space, a control character)
        bad = rng.choice(
            [b"", b"p" * 256, t + b"\xff", t + b" x", t + b"\x07", "probe.volatile.\u00e9".encode()]
        )
        return [bad, good_env]
    if kind == 9:  # one frame, or four
        return rng.choice([[t], [t, good[1], b"blob", b"extra"]])
    if kind == 10:  # wrong field types in the envelope itself
        return [
            t,
            MP.encode(
                envelope_dict(
                    rng, topic, {"type": "probe.volatile", "n": 1}, seq=rng.choice(["1", 1.5, [1]])
                )
            ),
        ]
    if (
        kind == 11
    ):  # msgpack with unknown envelope-level extension types / raw garbage after a valid prefix
        return [t, b"\xde\x00\x05" + rng.randbytes(rng.randint(0, 40))]
    if kind == 12:  # body not a map
        return [
            t,
            MP.encode(envelope_dict(rng, topic, rng.choice([[1, 2], "probe.volatile", 3, None]))),
        ]
    if kind == 13:  # integers out of range for their fields
        return [
            t,
            MP.encode(
                envelope_dict(
                    rng,
                    topic,
                    {"type": "probe.volatile", "n": 1},
                    mono=rng.choice([1.5, "x", True]),
                )
            ),
        ]
    # the tag of another family on the right topic
    return [t, MP.encode(envelope_dict(rng, topic, {"type": "sys.pong", "actor": "x"}))]


def open_sender(hx: Hex, kind: int, address: str) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(kind)
    sock.linger = 0
    sock.sndtimeo = 20_000  # a broker that stops reading fails the test instead of hanging it
    if kind == zmq.PUB:
        sock.sndhwm = (
            200_000  # queue here rather than drop: the volatile count stays close to what was sent
        )
    sock.connect(address)
    return sock


async def publish_probes(hx: Hex, numbers: range) -> None:
    client = BusClient(hx.endpoints, "after-fuzz")
    client.start()
    for n in numbers:
        await client.publish(ProbeDurable(n=n))
    assert await client.flush(30), "the broker did not acknowledge durable events after the fuzz"
    await client.close()
