"""A durable feed against a broker that answers every fetch later than the feed waits for it.

On two busy cores a broker can take longer than the feed's patience to answer a fetch. The
feed then asks again, under the same number: the late answer to the first copy is still the
answer it needs (the same ``after``, the same prefixes), and it takes it, once. A feed that
numbered each copy anew and took only the newest would never take any: each answer arrives
after the next copy was sent.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import zmq
import zmq.asyncio

from hexbus import codec
from hexbus.codec import BATCH, FETCH, FetchReply
from hexbus.feed import DurableFeed
from hexbus.log import RateLimitedCounter
from schemas import ProbeDurable
from tests.support.fuzz import valid_frames

LATE_S = 0.8  # the feed waits 0.5 s past wait_ms (0 while it replays) before it asks again


async def slow_broker(router: zmq.asyncio.Socket, events: int, asked: list[int]) -> None:
    """Answer each fetch LATE_S after it came, with the next event after the one it asks from."""
    rng = random.Random(7)
    while True:
        identity, command, body = await router.recv_multipart()
        assert command == FETCH
        request = codec.fetch_request_decoder.decode(body)
        asked.append(request.req)
        await asyncio.sleep(LATE_S)
        offset = request.after + 1
        if offset > events:
            reply = FetchReply(
                req=request.req, next_after=events, head=events, first=1, count=0, incarnation="s"
            )
            await router.send_multipart([identity, BATCH, codec.encode_control(reply)])
        else:
            frames = valid_frames(rng, ProbeDurable(n=offset), session=1, seq=offset, offset=offset)
            reply = FetchReply(
                req=request.req, next_after=offset, head=events, first=1, count=1, incarnation="s"
            )
            await router.send_multipart(
                [identity, BATCH, codec.encode_control(reply), *frames, b""]
            )


async def read(tmp_path: Path) -> tuple[list[int], list[int], int]:
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    address = f"ipc://{tmp_path}/replay"
    router.bind(address)
    dealer.connect(address)
    asked: list[int] = []
    broker = asyncio.create_task(slow_broker(router, 3, asked))
    rejected = RateLimitedCounter(None)
    feed = DurableFeed(dealer, ["probe.durable"], 0, rejected)
    got: list[int] = []
    try:

        async def consume() -> None:
            async for envelope, _ in feed:
                if envelope is not None:
                    assert isinstance(envelope.body, ProbeDurable)
                    got.append(envelope.body.n)
                if len(got) == 3:
                    return

        await asyncio.wait_for(consume(), 30)
    finally:
        broker.cancel()
        router.close(0)
        dealer.close(0)
        ctx.term()
    return got, asked, feed.req


def test_a_feed_takes_the_late_answer_to_a_question_it_asked_again(tmp_path: Path) -> None:
    got, asked, questions = asyncio.run(read(tmp_path))
    assert got == [1, 2, 3]  # in order, each once, though every answer came late
    # It did ask again while it waited (the case at hand), each time under the question's own
    # number: one number per answer taken, so an answer to a copy asked before it is stale.
    assert len(asked) > len(got) and sorted(set(asked)) == [1, 2, 3] and asked == sorted(asked)
    assert questions == 3
