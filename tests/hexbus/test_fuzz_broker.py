"""The broker fuzzed: 100,000 random frames on its sockets, counted as rejected, no crash.

Every message here is built to be invalid (random bytes, or a structured near miss
that one particular check must catch), so each one that reaches its reader must be
counted in that process's ``rejected`` counter and dropped. The generators are seeded
(``random.Random``) so a failure reproduces; a local sanity check asserts that every
generated bus message really is rejected by :func:`hexbus.codec.decode_message`, so a
count mismatch is the broker's doing, never the generator's.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator

import msgspec
import pytest
import zmq

from hexbus import codec
from hexbus.codec import BATCH, FETCH, PUBLISH, U64, FetchRequest, RejectedFrame
from schemas import (
    ActorLifecycle,
    BrokerHeartbeat,
    ChatAck,
    Delivery,
    ProbeDurable,
    ProbeVolatile,
    Rejected,
    delivery_of,
)
from tests.support.busclient import ask_count
from tests.support.fuzz import (
    MP,
    OVERSIZED_BLOB,
    SEED,
    TOTAL,
    frame_size,
    near_miss,
    open_sender,
    publish_probes,
    random_frames,
    valid_frames,
)
from tests.support.harness import FAST_BUS, Hex, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


OVERSIZED_ENVELOPE = codec.MAX_ENVELOPE_BYTES + 1


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
            frames = [FETCH, rng.randbytes(frame_size(rng))]
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
        ingest = open_sender(hx, zmq.DEALER, hx.endpoints.ingest)
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

        replay = open_sender(hx, zmq.DEALER, hx.endpoints.replay)
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
        pub = open_sender(hx, zmq.PUB, hx.endpoints.volatile_in)
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
        asyncio.run(publish_probes(hx, range(1, 501)))
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
