"""The broker fed schema-valid but absurd integers (negative sessions, huge fetches): no crash."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
import zmq

from hexbus import codec
from hexbus.codec import BATCH, FETCH, PUBLISH, U64
from schemas import ProbeDurable
from tests.support.busclient import ask_count
from tests.support.fuzz import MP, SEED, open_sender, publish_probes, valid_frames
from tests.support.harness import FAST_BUS, Hex, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


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
    sock = open_sender(hx, zmq.DEALER, hx.endpoints.ingest)
    try:
        frames = valid_frames(rng, ProbeDurable(n=1), session=session, seq=seq)
        sock.send_multipart([PUBLISH, U64.pack(floor), *frames])
        # A valid probe from another session afterwards must be acknowledged by the same broker.
        asyncio.run(publish_probes(hx, range(1, 2)))
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
    asyncio.run(publish_probes(hx, range(1, 4)))
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
        sock = open_sender(hx, zmq.DEALER, hx.endpoints.replay)
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
