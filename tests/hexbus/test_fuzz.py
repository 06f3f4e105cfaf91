"""100,000 random frames sent to the broker and to an actor's sockets: counted as rejected, no crash.

Every message here is built to be invalid (random bytes, or a structured near miss
that one particular check must catch), so each one that reaches its reader must be
counted in that process's ``rejected`` counter and dropped. The generators are seeded
(``random.Random``) so a failure reproduces; a local sanity check asserts that every
generated bus message really is rejected by :func:`hexbus.codec.decode_message`, so a
count mismatch is the broker's or the actor's doing, never the generator's.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from hexbus import codec
from hexbus.bus import BusClient
from hexbus.codec import BATCH, FETCH, PUBLISH, U64, FetchReply, FetchRequest, RejectedFrame
from hexbus.config import ActorSpec, BusConfig
from hexbus.endpoints import endpoints, ensure_run_dir
from hexbus.run import ActorProcessSpec
from schemas import (
    CONTROL_TAGS,
    ActorLifecycle,
    BrokerHeartbeat,
    ChatAck,
    Delivery,
    Heartbeat,
    Ping,
    Pong,
    ProbeDurable,
    ProbeVolatile,
    Rejected,
    delivery_of,
)
from tests.support.busclient import ask_count
from tests.support.harness import FAST_BUS, REPO, Hex, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

SEED = 0x4E58_F022
TOTAL = 100_000
MP = msgspec.msgpack.Encoder()
OVERSIZED_ENVELOPE = codec.MAX_ENVELOPE_BYTES + 1
OVERSIZED_BLOB = codec.MAX_BLOB_BYTES + 1


# -- generators ------------------------------------------------------------------------------------


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.7:
        return rng.randrange(0, 48)
    if roll < 0.97:
        return rng.randrange(48, 512)
    return rng.randrange(512, 4096)


def random_frames(rng: random.Random, lo: int = 1, hi: int = 5) -> list[bytes]:
    return [rng.randbytes(_size(rng)) for _ in range(rng.randint(lo, hi))]


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


def assert_rejected(frames: list[bytes]) -> None:
    """The generator's promise: ``decode_message`` refuses this message."""
    try:
        codec.decode_message(frames)
    except RejectedFrame:
        return
    raise AssertionError(f"generator produced a valid message: {frames!r}")


def rejected_on_volatile(frames: list[bytes]) -> bool:
    """What the broker's volatile path rejects: anything undecodable and anything durable."""
    try:
        envelope, _ = codec.decode_message(frames)
    except RejectedFrame:
        return True
    return delivery_of(envelope.topic) is not Delivery.VOLATILE


def rejected_on_ingest(frames: list[bytes]) -> bool:
    """What the broker's ingest path rejects (``frames`` without the identity a DEALER adds)."""
    if len(frames) < 4 or frames[0] != PUBLISH or len(frames[1]) != 8:
        return True
    try:
        envelope, _ = codec.decode_message(frames[2:])
    except RejectedFrame:
        return True
    if delivery_of(envelope.topic) is not Delivery.DURABLE:
        return True
    return envelope.session == 0 or envelope.seq == 0


def rejected_on_replay(frames: list[bytes]) -> bool:
    """What the broker's replay path rejects (``frames`` without the identity a DEALER adds)."""
    if len(frames) != 2 or frames[0] != FETCH:
        return True
    try:
        request = codec.fetch_request_decoder.decode(frames[1])
        for prefix in request.prefixes:
            prefix.encode("ascii")
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeEncodeError):
        return True
    return False


def volatile_fuzz(rng: random.Random, n: int) -> Iterator[list[bytes]]:
    """Messages for the broker's XSUB: random frames, near misses, durable events, a few oversized."""
    for i in range(n):
        roll = rng.random()
        if i in (n // 3, 2 * n // 3):
            frames = [b"probe.volatile.fz", rng.randbytes(OVERSIZED_ENVELOPE)]
        elif i == n // 2:
            frames = [*valid_frames(rng, ProbeVolatile(n=1), key="fz"), bytes(OVERSIZED_BLOB)]
        elif roll < 0.5:
            frames = random_frames(rng)
        elif roll < 0.85:
            frames = near_miss(
                rng, rng.choice(["probe.volatile.fz", "sys.heartbeat.fz", "chat.ack.fz"])
            )
        elif roll < 0.95:  # durable events on the volatile path
            event = rng.choice([ProbeDurable(n=i), ActorLifecycle(actor="fz", change="spawn")])
            frames = valid_frames(
                rng, event, key="fz", session=rng.randrange(1, 1 << 40), seq=i + 1
            )
        else:  # a valid volatile envelope whose topic frame differs by case
            frames = valid_frames(rng, ProbeVolatile(n=i), key="fz")
            frames[0] = frames[0].upper()
        yield frames


def ingest_fuzz(rng: random.Random, n: int) -> Iterator[list[bytes]]:
    """Messages for the broker's ingest ROUTER (without the identity frame a DEALER adds)."""
    session = rng.randrange(1, 1 << 62)
    for i in range(n):
        roll = rng.random()
        floor = U64.pack(rng.choice([0, 1, i]))
        durable = valid_frames(rng, ProbeDurable(n=i), session=session, seq=i + 1)
        if i in (n // 4, 3 * n // 4):
            frames = [PUBLISH, floor, b"probe.durable", rng.randbytes(OVERSIZED_ENVELOPE)]
        elif i == n // 2:
            frames = [PUBLISH, floor, *durable, bytes(OVERSIZED_BLOB)]
        elif roll < 0.4:
            frames = random_frames(rng)
        elif roll < 0.6:
            frames = [
                PUBLISH,
                floor,
                *near_miss(rng, rng.choice(["probe.durable.fz", "chat.message.fz"])),
            ]
        elif roll < 0.7:  # volatile topics on the durable path
            event = rng.choice([ProbeVolatile(n=i), ChatAck(message_event_id="x", channel="c")])
            frames = [
                PUBLISH,
                floor,
                *valid_frames(rng, event, key="fz", session=session, seq=i + 1),
            ]
        elif roll < 0.8:  # wrong control bytes
            frames = [rng.choice([b"X", b"PP", b"", b"p", b"A", b"F"]), floor, *durable]
        elif roll < 0.85:  # a floor that is not 8 bytes
            frames = [PUBLISH, rng.randbytes(rng.choice([0, 1, 7, 9, 16])), *durable]
        elif roll < 0.9:  # too few frames, or too many
            frames = rng.choice(
                [
                    [PUBLISH],
                    [PUBLISH, floor],
                    [PUBLISH, floor, durable[0]],
                    [PUBLISH, floor, *durable, b"blob", b"extra"],
                ]
            )
        else:  # durable events without a session or a seq
            which = rng.choice([(0, i + 1), (session, 0), (0, 0)])
            frames = [
                PUBLISH,
                floor,
                *valid_frames(rng, ProbeDurable(n=i), session=which[0], seq=which[1]),
            ]
        yield frames


def replay_fuzz(rng: random.Random, n: int) -> Iterator[list[bytes]]:
    """Fetch requests with garbage, for the broker's replay ROUTER (without the identity frame)."""
    good = codec.encode_control(FetchRequest(req=1, after=0, prefixes=["probe.durable"]))
    for i in range(n):
        roll = rng.random()
        if roll < 0.4:
            frames = random_frames(rng)
        elif roll < 0.6:
            frames = [FETCH, rng.randbytes(_size(rng))]
        elif roll < 0.7:  # a wrong frame count, or a wrong command byte
            frames = rng.choice(
                [
                    [FETCH],
                    [FETCH, good, b""],
                    [b"X", good],
                    [b"", good],
                    [BATCH, good],
                    [FETCH, good, good, good],
                ]
            )
        elif roll < 0.8:  # valid msgpack, wrong shape
            shape = rng.choice(
                [
                    {},
                    {"req": 1},
                    {"req": "1", "after": 0, "prefixes": []},
                    [1, 0, []],
                    {"req": 1, "after": 0, "prefixes": "probe"},
                    {"req": 1, "after": 0.5, "prefixes": []},
                ]
            )
            frames = [FETCH, MP.encode(shape)]
        elif roll < 0.9:  # prefixes that are not ASCII, or not strings
            prefixes = rng.choice([["probe.\u00e9"], ["\u2603"], [1, 2], [None], [["probe"]]])
            frames = [FETCH, MP.encode({"req": i, "after": 0, "prefixes": prefixes})]
        else:  # a truncated valid request, or one with trailing bytes
            frames = [FETCH, rng.choice([good[: rng.randrange(len(good))], good + b"\x00"])]
        yield frames


# -- the broker ------------------------------------------------------------------------------------


class BrokerWatch:
    """A raw SUB on the broker's XPUB subscribed to everything.

    Subscribing to "" also makes the broker forward that subscription to every
    publisher, so frames with random topics leave the fuzzing PUB at all.
    """

    def __init__(self, hx: Hex) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self.sock.subscribe(b"")
        self.sock.connect(hx.endpoints.volatile_out)
        self.heartbeat: BrokerHeartbeat | None = None
        self.incarnations: set[str] = set()
        self.counts: dict[str, int] = {}

    def drain(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                envelope, _ = codec.decode_message(frames)
            except RejectedFrame:
                continue
            if isinstance(envelope.body, BrokerHeartbeat):
                self.heartbeat = envelope.body
                self.incarnations.add(envelope.body.incarnation)
            elif isinstance(envelope.body, Rejected) and envelope.body.process == "broker":
                self.counts = dict(envelope.body.counts)

    def rejected(self) -> int:
        self.drain()
        return self.heartbeat.rejected if self.heartbeat else -1

    def close(self) -> None:
        self.sock.close(linger=0)


def _sender(hx: Hex, kind: int, address: str) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(kind)
    sock.linger = 0
    sock.sndtimeo = 20_000  # a broker that stops reading fails the test instead of hanging it
    if kind == zmq.PUB:
        sock.sndhwm = (
            200_000  # queue here rather than drop: the volatile count stays close to what was sent
        )
    sock.connect(address)
    return sock


def _settle(watch: BrokerWatch, target: int, timeout: float) -> int:
    """Wait until the broker's rejected counter reaches ``target``; return the last value seen."""
    try:
        poll_for(
            lambda: watch.rejected() >= target,
            timeout,
            interval=0.05,
            what=f"broker rejected >= {target}",
        )
    except AssertionError:
        pass
    return watch.rejected()


async def _publish_probes(hx: Hex, numbers: range) -> None:
    client = BusClient(hx.endpoints, "after-fuzz")
    client.start()
    for n in numbers:
        await client.publish(ProbeDurable(n=n))
    assert await client.flush(30), "the broker did not acknowledge durable events after the fuzz"
    await client.close()


def test_broker_counts_100k_random_frames_as_rejected_and_keeps_serving(
    hex_factory: Callable[[str], Hex],
) -> None:
    hx = hex_factory(FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")).start()
    broker_pid, counter_pid = hx.pid("broker"), hx.pid("counter")
    rng = random.Random(SEED)
    n_ingest, n_replay = 40_000, 20_000
    n_volatile = TOTAL - n_ingest - n_replay
    watch = BrokerWatch(hx)
    sockets: list[zmq.Socket[bytes]] = [watch.sock]
    try:
        poll_for(
            lambda: watch.rejected() >= 0, 10, what="a broker heartbeat on sys.broker.heartbeat"
        )
        base = watch.rejected()
        assert base == 0

        # Ingest and replay: DEALERs block when the pipe is full, so nothing is lost: the count is exact.
        ingest = _sender(hx, zmq.DEALER, hx.endpoints.ingest)
        sockets.append(ingest)
        sent = 0
        for frames in ingest_fuzz(rng, n_ingest):
            assert rejected_on_ingest(frames)
            ingest.send_multipart(frames)
            sent += 1
        assert sent == n_ingest
        after_ingest = _settle(watch, base + n_ingest, 30)
        assert after_ingest == base + n_ingest, (
            f"ingest: {after_ingest - base} of {n_ingest} counted"
        )

        replay = _sender(hx, zmq.DEALER, hx.endpoints.replay)
        sockets.append(replay)
        for frames in replay_fuzz(rng, n_replay):
            assert rejected_on_replay(frames)
            replay.send_multipart(frames)
        after_replay = _settle(watch, after_ingest + n_replay, 30)
        assert after_replay == after_ingest + n_replay, (
            f"replay: {after_replay - after_ingest} of {n_replay}"
        )
        # A garbage fetch is never answered.
        assert not replay.poll(0, zmq.POLLIN)

        # Volatile: the broker forwards frames inside libzmq without decoding them; every receiver
        # decodes strictly. A subscriber to everything must see each fuzz frame refused by the
        # codec (or, for a well-formed durable event on the volatile path, skipped by class).
        sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        sockets.append(sub)
        sub.rcvhwm = 200_000
        sub.subscribe(b"")
        sub.connect(hx.endpoints.volatile_out)
        sub.connect(hx.endpoints.volatile_big)
        pub = _sender(hx, zmq.PUB, hx.endpoints.volatile_in)
        sockets.append(pub)
        refused: dict[str, int] = {}
        received = 0

        def drain_sub() -> None:
            nonlocal received
            while True:
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
                received += 1
                try:
                    envelope, _ = codec.decode_message(frames)
                except RejectedFrame as exc:
                    refused[exc.kind] = refused.get(exc.kind, 0) + 1
                    continue
                if not envelope.topic.endswith(".fz"):
                    received -= 1  # the system's own traffic (heartbeats, lifecycle), not fuzz
                    continue
                assert delivery_of(envelope.topic) is Delivery.DURABLE, envelope
                refused["class"] = refused.get("class", 0) + 1

        def joined() -> bool:  # a PUB drops until the subscriptions reach it (the slow joiner)
            pub.send_multipart([b"probe.volatile.warmup", b"\xc1"])
            drain_sub()
            return received > 0

        poll_for(joined, 10, interval=0.05, what="the fuzzing PUB's frames reaching a subscriber")
        warmup = received
        planned = 0
        for frames in volatile_fuzz(rng, n_volatile):
            assert rejected_on_volatile(frames)
            pub.send_multipart(frames)
            planned += 1
            if planned % 256 == 0:
                # Paced: let the subscriber catch up, so high-water marks on a loaded machine don't
                # drop what this test wants to see refused (drops themselves are allowed, bounded).
                deadline = time.monotonic() + 2.0
                drain_sub()
                while received - warmup < planned and time.monotonic() < deadline:
                    time.sleep(0.002)
                    drain_sub()
        assert planned == n_volatile
        quiet_since, seen = time.monotonic(), received
        while time.monotonic() - quiet_since < 1.0 and received - warmup < n_volatile:
            time.sleep(0.05)
            drain_sub()
            if received != seen:
                quiet_since, seen = time.monotonic(), received
        counted = received - warmup
        # Volatile frames may drop under the high-water marks; most must arrive, all of them refused.
        assert counted >= 0.9 * n_volatile, f"volatile: only {counted} of {n_volatile} arrived"
        assert sum(refused.values()) == received
        for kind in ("frames", "malformed", "unknown_tag", "mismatch", "topic", "class"):
            assert refused.get(kind, 0) > 0, f"no {kind!r} refusals in {refused}"
        assert watch.rejected() == after_replay  # the broker itself decoded none of them

        # Every near miss hit the check it was built for (sys.bus.rejected carries the counts by kind).
        poll_for(
            lambda: sum(watch.counts.values()) == watch.rejected(),
            5,
            what="a sys.bus.rejected event matching the heartbeat's total",
        )
        for kind in ("frames", "malformed", "unknown_tag", "mismatch", "topic", "class", "fetch"):
            assert watch.counts.get(kind, 0) > 0, f"no {kind!r} rejections in {watch.counts}"

        # Never restarted: same pid, same incarnation, no restarts; the actor untouched.
        status = hx.status()
        assert status["broker"]["pid"] == broker_pid and status["broker"]["restarts"] == 0, status[
            "broker"
        ]
        assert status["broker"]["state"] == "live"
        assert status["broker"]["rejected"] >= after_replay
        assert len(watch.incarnations) == 1, watch.incarnations
        assert status["counter"]["pid"] == counter_pid and status["counter"]["restarts"] == 0

        # Durable events published afterwards are counted exactly.
        asyncio.run(_publish_probes(hx, range(1, 501)))
        poll_for(
            lambda: asyncio.run(ask_count(hx.endpoints)) == (500, 125_250),
            20,
            what="500 probes counted",
        )
        assert hx.pid("broker") == broker_pid
        assert "Traceback" not in hx.log()
    finally:
        for sock in sockets:
            sock.close(linger=0)


@pytest.mark.parametrize(
    ("session", "seq", "floor"),
    [(-1, 1, 1), (-5, -5, 1), (-1, 9, 1), (7, -1, 1)],
    ids=["negative-session", "negative-session-and-seq", "negative-session-ahead", "negative-seq"],
)
def test_broker_survives_durable_envelopes_with_negative_session_or_seq(
    hex_factory: Callable[[str], Hex], session: int, seq: int, floor: int
) -> None:
    """msgpack integers may be negative: the broker must reject them, not crash on struct.pack."""
    hx = hex_factory(FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")).start()
    broker_pid = hx.pid("broker")
    rng = random.Random(SEED)
    sock = _sender(hx, zmq.DEALER, hx.endpoints.ingest)
    try:
        frames = valid_frames(rng, ProbeDurable(n=1), session=session, seq=seq)
        sock.send_multipart([PUBLISH, U64.pack(floor), *frames])
        # A valid probe from another session afterwards must be acknowledged by the same broker.
        asyncio.run(_publish_probes(hx, range(1, 2)))
        poll_for(
            lambda: asyncio.run(ask_count(hx.endpoints)) == (1, 1),
            10,
            what="the valid probe counted",
        )
        status = hx.status()["broker"]
        log = hx.log()
        crash = log[log.find("Traceback") :][:1500] if "Traceback" in log else log[-1500:]
        assert status["pid"] == broker_pid and status["restarts"] == 0, (
            f"the broker restarted: {status}\n{crash}"
        )
    finally:
        sock.close(linger=0)


def test_broker_answers_fetch_requests_with_extreme_integers(
    hex_factory: Callable[[str], Hex],
) -> None:
    """Valid by the schema, absurd in value: each is answered (not rejected), and nothing crashes."""
    hx = hex_factory(FAST_BUS).start()
    broker_pid = hx.pid("broker")
    asyncio.run(_publish_probes(hx, range(1, 4)))
    top, bottom = (1 << 64) - 1, -(1 << 63)
    cases: list[dict[str, Any]] = [
        {"req": -1, "after": top, "prefixes": []},
        {"req": top, "after": bottom, "prefixes": [""]},
        {
            "req": 3,
            "after": 0,
            "prefixes": ["probe.durable"],
            "max_events": 0,
            "max_bytes": 0,
            "wait_ms": -1,
        },
        {"req": 4, "after": 0, "prefixes": [], "max_events": bottom, "max_bytes": top},
        {"req": 5, "after": 0, "prefixes": ["x"] * 10_000},
        {"req": 6, "after": 0, "prefixes": ["probe.durable"], "wait_ms": top},
        {"req": 7, "after": 0, "prefixes": ["probe.durable"], "wait_ms": bottom, "max_events": top},
    ]
    for case in cases:
        sock = _sender(hx, zmq.DEALER, hx.endpoints.replay)
        try:
            sock.send_multipart([FETCH, MP.encode(case)])
            assert sock.poll(5000, zmq.POLLIN), f"no answer to {case}"
            frames = sock.recv_multipart()
        finally:
            sock.close(linger=0)
        assert frames[0] == BATCH
        reply = codec.fetch_reply_decoder.decode(frames[1])
        assert reply.req == case["req"] and len(frames) == 2 + 3 * reply.count, (case, reply)
    status = hx.status()["broker"]
    assert status["pid"] == broker_pid and status["restarts"] == 0 and status["rejected"] == 0, (
        status
    )


# -- an actor, against a fake broker -----------------------------------------------------------------


class FakeBroker:
    """The broker's sockets, bound by the test, so an actor's sockets can be fed anything."""

    def __init__(self, run_dir: Path) -> None:
        self.bus = BusConfig(heartbeat_interval_s=0.2)
        self.endpoints = endpoints(self.bus, run_dir)
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.sockets: list[zmq.Socket[bytes]] = []

        def bind(kind: int, address: str) -> zmq.Socket[bytes]:
            sock: zmq.Socket[bytes] = ctx.socket(kind)
            sock.linger = 0
            sock.sndtimeo = 20_000
            sock.bind(address)
            self.sockets.append(sock)
            return sock

        self.vout = bind(zmq.XPUB, self.endpoints.volatile_out)
        self.vout.setsockopt(
            zmq.XPUB_NODROP, 1
        )  # block (up to sndtimeo) instead of dropping: exact counts
        self.replay = bind(zmq.ROUTER, self.endpoints.replay)
        self.replay.router_mandatory = True
        self.ingest = bind(zmq.ROUTER, self.endpoints.ingest)
        self.hb = bind(zmq.PULL, self.endpoints.heartbeat)
        self.vin = bind(zmq.XSUB, self.endpoints.volatile_in)
        self.vin.send(b"\x01")  # subscribe to everything the actor publishes
        self.beat: Heartbeat | None = None
        self.beats = 0

    def heartbeat(self) -> Heartbeat | None:
        while True:
            try:
                frames = self.hb.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return self.beat
            envelope, _ = codec.decode_message(frames)
            assert isinstance(envelope.body, Heartbeat)
            self.beat = envelope.body
            self.beats += 1

    def next_fetch(self, timeout: float = 10) -> tuple[bytes, FetchRequest]:
        """The actor's next fetch request (the latest one if several wait)."""
        assert self.replay.poll(int(timeout * 1000), zmq.POLLIN), "the actor sent no fetch request"
        latest: tuple[bytes, FetchRequest] | None = None
        while True:
            try:
                identity, command, body = self.replay.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            assert command == FETCH
            latest = identity, codec.fetch_request_decoder.decode(body)
        assert latest is not None
        return latest

    def volatile_reply(self, topic: str, timeout: float) -> Any:
        """The first event the actor publishes on ``topic`` within ``timeout`` seconds, or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.vin.poll(int(left * 1000) + 1, zmq.POLLIN):
                return None
            frames = self.vin.recv_multipart()
            envelope, _ = codec.decode_message(frames)
            if envelope.topic == topic:
                return envelope
        return None

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)


def actor_volatile_fuzz(
    rng: random.Random, prefixes: list[str], oversized: bool = False
) -> list[bytes]:
    """One message for the actor's SUB: its first frame starts with a prefix it subscribes to
    (anything else the SUB filters out before the actor sees it)."""
    prefix = rng.choice(prefixes)
    if oversized:
        frames = [*valid_frames(rng, ProbeVolatile(n=1), key="count"), bytes(OVERSIZED_BLOB)]
    elif rng.random() < 0.5:
        frames = random_frames(rng)
        frames[0] = prefix.encode() + frames[0][: rng.randrange(0, 16)]
    else:
        frames = near_miss(rng, prefix)
    if not frames[0].startswith(prefix.encode()):
        frames[0] = (
            prefix.encode() + b" " + frames[0]
        )  # still a bad topic, now one the actor receives
    assert_rejected(frames)
    return frames


def actor_replay_garbage(rng: random.Random) -> tuple[list[bytes], int]:
    """A reply the actor must reject while it waits for an answer: (frames, rejections it causes)."""
    roll = rng.random()
    if roll < 0.35:
        frames = random_frames(rng)
        if frames[0] == BATCH:
            frames[0] = b"X"
        return frames, 1
    if roll < 0.5:
        return [BATCH], 1
    if roll < 0.8:
        return [BATCH, rng.randbytes(_size(rng)), *random_frames(rng, 0, 3)], 1
    shape = rng.choice(
        [
            {},
            [1, 2],
            {"req": "x"},
            {"req": 1, "next_after": 0},
            "R",
            {"req": 1.5, "next_after": 0, "head": 0, "first": 0, "count": 0},
        ]
    )
    return [BATCH, MP.encode(shape)], 1


def actor_replay_terminal(rng: random.Random, req: int) -> tuple[list[bytes], int]:
    """A reply with a valid header for ``req`` that ends the actor's wait: bad frame counts or bad events."""
    if rng.random() < 0.5:
        count = rng.randrange(0, 5)
        body_frames = 3 * count + rng.choice([-2, -1, 1, 2, 3]) if count else rng.randint(1, 4)
        reply = FetchReply(req=req, next_after=0, head=0, first=1, count=count, incarnation="fuzz")
        return [
            BATCH,
            codec.encode_control(reply),
            *[rng.randbytes(_size(rng)) for _ in range(body_frames)],
        ], 1
    count = rng.randint(1, 8)
    body: list[bytes] = []
    for _ in range(count):
        pair = (
            near_miss(rng, "probe.durable")[:2] if rng.random() < 0.7 else random_frames(rng, 2, 2)
        )
        topic, envelope = pair if len(pair) == 2 else (pair[0], b"")
        assert_rejected([topic, envelope])
        body += [topic, envelope, rng.randbytes(rng.randrange(0, 8))]
    reply = FetchReply(req=req, next_after=0, head=0, first=1, count=count, incarnation="fuzz")
    return [BATCH, codec.encode_control(reply), *body], count


def test_actor_counts_100k_random_frames_as_rejected_and_still_applies_valid_events() -> None:
    run_dir = ensure_run_dir(Path(tempfile.mkdtemp(prefix="hx", dir="/tmp")))
    fake = FakeBroker(run_dir)
    spec = ActorProcessSpec(
        name="counter",
        endpoints=fake.endpoints,
        bus=fake.bus,
        data_dir=str(run_dir / "data"),
        actor=ActorSpec(module="actors.diag.actor:CounterActor"),
    )
    env = {k: v for k, v in os.environ.items() if k != "HEXBUS_SUPERVISOR_PID"}
    env.update(HEXBUS_SPEC=msgspec.json.encode(spec).decode(), HEXBUS_LOG_JSON="1")
    log_path = run_dir / "actor.log"
    rng = random.Random(SEED + 1)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hexbus.run",
                "actors.diag.actor:CounterActor",
                "--name",
                "counter",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    try:
        # The actor's SUB subscribes to its durable and volatile prefixes and its control topics.
        prefixes = [
            "probe.durable",
            "probe.volatile.count",
            *(f"{tag}.counter" for tag in sorted(CONTROL_TAGS)),
        ]
        wanted = {b"\x01" + p.encode() for p in prefixes}
        seen: set[bytes] = set()

        def subscribed() -> bool:
            while fake.vout.poll(0, zmq.POLLIN):
                seen.add(fake.vout.recv())
            return wanted <= seen

        poll_for(subscribed, 15, what=f"the actor's subscriptions {sorted(wanted - seen)}")
        poll_for(fake.heartbeat, 10, what="a first heartbeat")

        expected = 0
        sent = 0
        per_cycle = 250
        oversized_at = {TOTAL // 4, TOTAL // 2, 3 * TOTAL // 4}
        while sent < TOTAL:
            identity, request = fake.next_fetch()
            assert request.after == 0 and request.prefixes == [
                "probe.durable",
                "probe.volatile.count",
            ]
            for i in range(per_cycle // 2):
                fake.vout.send_multipart(
                    actor_volatile_fuzz(rng, prefixes, sent + i in oversized_at)
                )
                expected += 1
            for _ in range(per_cycle // 2 - 1):
                frames, rejections = actor_replay_garbage(rng)
                fake.replay.send_multipart([identity, *frames])
                expected += rejections
            frames, rejections = actor_replay_terminal(rng, request.req)
            fake.replay.send_multipart([identity, *frames])
            expected += rejections
            sent += per_cycle
        assert sent == TOTAL

        def counted() -> bool:
            beat = fake.heartbeat()
            return beat is not None and beat.rejected >= expected

        try:
            poll_for(counted, 30, what=f"the actor's rejected counter reaching {expected}")
        except AssertionError:
            pass
        beat = fake.heartbeat()
        assert beat is not None
        assert proc.poll() is None, "the actor process died:\n" + log_path.read_text()[-3000:]
        assert beat.rejected == expected, (
            f"actor counted {beat.rejected} rejections, expected {expected}"
        )
        assert beat.applied_offset == 0 and beat.pid == proc.pid

        # Still beating after the fuzz.
        beats = fake.beats
        poll_for(
            lambda: fake.heartbeat() and fake.beats >= beats + 2,
            5,
            what="heartbeats after the fuzz",
        )

        # A valid reply with one valid event is applied, and the feed goes live on the next one.
        identity, request = fake.next_fetch()
        frames = valid_frames(rng, ProbeDurable(n=7), session=99, seq=1, offset=1)
        reply = FetchReply(
            req=request.req, next_after=1, head=1, first=1, count=1, incarnation="fake"
        )
        fake.replay.send_multipart([identity, BATCH, codec.encode_control(reply), *frames, b""])
        identity, request = fake.next_fetch()
        assert request.after == 1
        reply = FetchReply(
            req=request.req, next_after=1, head=1, first=1, count=0, incarnation="fake"
        )
        fake.replay.send_multipart([identity, BATCH, codec.encode_control(reply)])

        def pong() -> Pong | None:
            ping = codec.make_envelope(
                Ping(target="counter", nonce=1),
                event_id=f"p{rng.getrandbits(32):x}",
                source="fuzzer",
                key="counter",
                correlation="fz-ping",
            )
            fake.vout.send_multipart(codec.message_frames(ping))
            envelope = fake.volatile_reply("sys.pong.fuzzer", 0.3)
            body = envelope.body if envelope is not None else None
            return (
                body
                if isinstance(body, Pong) and body.applied_offset == 1 and body.state == "live"
                else None
            )

        answer = poll_for(pong, 10, what="a Pong with applied_offset 1 from a live actor")
        assert answer.actor == "counter"

        ask = codec.make_envelope(
            ProbeVolatile(n=0, note="count?"),
            event_id="fz-ask",
            source="fuzzer",
            key="count",
            correlation="fz-count",
        )
        fake.vout.send_multipart(codec.message_frames(ask))
        envelope = fake.volatile_reply("probe.volatile.fuzzer", 5)
        assert envelope is not None and envelope.correlation == "fz-count"
        assert (envelope.body.n, envelope.body.note) == (1, "total=7")
        assert proc.poll() is None
        assert "Traceback" not in log_path.read_text()
    finally:
        proc.kill()
        proc.wait(10)
        fake.close()
        shutil.rmtree(run_dir, ignore_errors=True)
