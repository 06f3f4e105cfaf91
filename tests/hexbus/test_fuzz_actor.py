"""An actor fuzzed through a fake broker: 100,000 random frames counted as rejected, no crash.

Every message here is built to be invalid (random bytes, or a structured near miss
that one particular check must catch), so each one that reaches its reader must be
counted in that process's ``rejected`` counter and dropped. The generators are seeded
(``random.Random``) so a failure reproduces; a local sanity check asserts that every
generated bus message really is rejected by :func:`hexbus.codec.decode_message`, so a
count mismatch is the actor's doing, never the generator's.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from hexbus import codec
from hexbus.codec import BATCH, FETCH, FetchReply, FetchRequest, RejectedFrame
from hexbus.config import ActorSpec, BusConfig
from hexbus.endpoints import endpoints, ensure_run_dir
from hexbus.run import ActorProcessSpec
from schemas import CONTROL_TAGS, Heartbeat, Ping, Pong, ProbeDurable, ProbeVolatile
from tests.support.fuzz import (
    MP,
    OVERSIZED_BLOB,
    SEED,
    TOTAL,
    frame_size,
    near_miss,
    random_frames,
    valid_frames,
)
from tests.support.harness import REPO, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


def assert_rejected(frames: list[bytes]) -> None:
    """The generator's promise: ``decode_message`` refuses this message."""
    try:
        codec.decode_message(frames)
    except RejectedFrame:
        return
    raise AssertionError(f"generator produced a valid message: {frames!r}")


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

    def next_fetch(self, newer_than: int, timeout: float = 10) -> tuple[bytes, FetchRequest]:
        """The actor's first fetch request numbered above ``newer_than``, the last question
        answered. A feed that hears nothing for a while asks again under the same number, and
        takes a new one only once it takes an answer: a copy of an answered question still in
        the socket would get an answer the actor rightly ignores as stale."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.replay.poll(int(left * 1000) + 1, zmq.POLLIN):
                break
            identity, command, body = self.replay.recv_multipart()
            assert command == FETCH
            request = codec.fetch_request_decoder.decode(body)
            if request.req > newer_than:
                return identity, request
        raise AssertionError(f"the actor sent no fetch request after {newer_than}")

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
        return [BATCH, rng.randbytes(frame_size(rng)), *random_frames(rng, 0, 3)], 1
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
            *[rng.randbytes(frame_size(rng)) for _ in range(body_frames)],
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
        answered = 0
        while sent < TOTAL:
            identity, request = fake.next_fetch(answered)
            assert request.after == 0 and request.prefixes == [
                "probe.durable",
                "probe.volatile.count",
                "sys.redrive.counter",  # every subscribing actor takes retries of its dead letters
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
            answered = request.req
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
        identity, request = fake.next_fetch(answered)
        frames = valid_frames(rng, ProbeDurable(n=7), session=99, seq=1, offset=1)
        reply = FetchReply(
            req=request.req, next_after=1, head=1, first=1, count=1, incarnation="fake"
        )
        fake.replay.send_multipart([identity, BATCH, codec.encode_control(reply), *frames, b""])
        identity, request = fake.next_fetch(request.req)
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
