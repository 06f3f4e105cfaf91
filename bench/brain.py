"""What the brain actor adds on top of its backend: first-chunk overhead and streaming throughput.

A Hex runs the brain alone (packaged SmolLM2 through llama.cpp, memory and
metadata off, fixed seed). The bench process sends ``ChatMessage`` events one at
a time, each in a fresh conversation (so every prompt is the same size), and
takes, on its own clock:

- ``message -> first chunk``: from just before the publish to the first
  ``chat.reply.chunk`` for that message;
- the backend's own time to first token for the same reply, measured inside
  the actor around the backend call and published as the ``brain.first_token``
  metric (``reply_to`` label). Overhead = the first minus the second: the bus,
  the durable path, dispatch, prompt building and the chunk's trip back;
- streaming rate: chunks from the first to the last, over that time;
- ``burst_last_reply_s``: three lines in a row (``BURST_GAP_S`` apart, in a
  fresh conversation), from the last one's publish to its complete final reply,
  next to ``single_reply_s``, one line to its complete reply, alternated with it
  in the same run. The burst's lines are answered as one turn; the figure says
  what that costs the person over saying it in one line.

Baseline, in the same run and process: the same backend class called directly
(``LlamaCppBackend.stream`` on the same prompt shape), its tokens/s from first
to last piece. Direct and through-the-actor alternate message by message, so
the shared machine's noise falls on both alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import shutil
import time
from typing import Any

from actors.brain.backends import Params
from actors.brain.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from actors.brain.persona import load_persona
from actors.brain.prompt import Budgets, build, persona_rules, turn_rules
from actors.brain.rules import new_relationship
from bench._common import emit, parser, progress, run_async, summary
from hexbus.bus import BusClient
from hexbus.log import configure
from schemas import ChatMessage, Metric, Reply, ReplyChunk
from tests.support.harness import FAST_BUS, REPO, Hex

MESSAGE = (
    "Tell me a story about a goblin who collects shiny spoons, where she finds them, which one she "
    "likes best, and what she does when somebody tries to take one away from her, please."
)
SEED = 3
BURST = ("so I was at the lake", "and a goblin stole my spoon", "what should I do?")
BURST_GAP_S = 0.5


def config(root: Path) -> str:
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    return (
        FAST_BUS
        + f"""
[actors.brain]
module = "actors.brain.actor:BrainActor"
heartbeat_timeout_s = 10.0
[actors.brain.config]
backends = [{{type = "llamacpp"}}]
seed = {SEED}
memory = false
metadata = false
"""
    )


class ActorSide:
    """A bus client that sends chat messages to the brain and times what comes back."""

    def __init__(self, hx: Hex) -> None:
        self.client = BusClient(hx.endpoints, "bench-brain")
        self.client.subscribe("chat.reply.chunk")
        self.client.subscribe("metrics.brain")
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.chunks: dict[str, int] = {}
        self.backend_ttft: dict[str, float] = {}
        self.tokens: dict[str, int] = {}
        self.finals: set[str] = set()
        self.final_at: dict[str, tuple[float, str]] = {}  # reply_to -> (arrival, status)
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.client.start()
        self.feed = self.client.durable(["chat.reply"], after=-1, wait_ms=200)
        self.tasks = [asyncio.create_task(self._volatile()), asyncio.create_task(self._replies())]
        if not await self.feed.positioned(10):
            raise TimeoutError("the broker did not answer the tail feed within 10 s")
        await asyncio.sleep(0.5)

    async def _volatile(self) -> None:
        async for envelope, _ in self.client.volatile():
            body, now = envelope.body, time.perf_counter()
            if isinstance(body, ReplyChunk):
                self.first.setdefault(body.reply_to, now)
                self.last[body.reply_to] = now
                self.chunks[body.reply_to] = self.chunks.get(body.reply_to, 0) + 1
            elif isinstance(body, Metric) and body.name == "brain.first_token":
                self.backend_ttft[body.labels.get("reply_to", "")] = body.value
            elif isinstance(body, Metric) and body.name == "brain.tokens.completion":
                self.tokens[body.labels.get("reply_to", "")] = int(body.value)

    async def _replies(self) -> None:
        async for envelope, _ in self.feed:
            if envelope is not None and isinstance(envelope.body, Reply):
                self.finals.add(envelope.body.reply_to)
                self.final_at[envelope.body.reply_to] = (time.perf_counter(), envelope.body.status)

    async def lines(self, conversation: str, texts: tuple[str, ...]) -> float:
        """``texts`` into one fresh conversation, ``BURST_GAP_S`` apart: seconds from the last
        one's publish to its complete final reply."""
        key, sent = "", 0.0
        for n, text in enumerate(texts):
            if n:
                await asyncio.sleep(BURST_GAP_S)
            event = ChatMessage(
                platform="console",
                person_id="bench",
                display_name="Bench",
                channel=conversation,
                text=text,
                direct=True,
            )
            sent = time.perf_counter()
            key = (await self.client.publish_durable(event, key="console")).id
        deadline = time.monotonic() + 120
        while key not in self.final_at:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply in {conversation}")
            await asyncio.sleep(0.005)
        arrived, status = self.final_at[key]
        if status != "complete":
            raise RuntimeError(f"the last line in {conversation} got a {status} reply")
        return arrived - sent

    async def one(self, i: int) -> dict[str, float] | None:
        """One message in a fresh conversation (every prompt the same size); None if it did not stream."""
        event = ChatMessage(
            platform="console",
            person_id=f"bench{i}",
            display_name="Bench",
            channel=f"b{i}",
            text=MESSAGE,
            direct=True,
        )
        sent = time.perf_counter()
        envelope = await self.client.publish_durable(event, key="console")
        key = envelope.id
        deadline = time.monotonic() + 120
        while key not in self.finals or key not in self.backend_ttft or key not in self.tokens:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply or no metrics for message {i}")
            await asyncio.sleep(0.005)
        if key not in self.first:
            return None
        first_ms = (self.first[key] - sent) * 1000
        # Chunks coalesce pieces (chunk_interval_ms), so the rate counts the reply's tokens: all but the
        # first arrived between the first chunk and the last.
        span = self.last[key] - self.first[key]
        rate = (self.tokens[key] - 1) / span if self.tokens[key] > 1 and span > 0 else 0.0
        progress(
            f"actor {i}: first chunk {first_ms:.1f} ms, backend ttft {self.backend_ttft[key]:.1f} ms, "
            f"{self.tokens[key]} tokens in {self.chunks[key]} chunks, {rate:.1f} tok/s"
        )
        return {
            "first_chunk_ms": first_ms,
            "backend_ttft_ms": self.backend_ttft[key],
            "overhead_ms": first_ms - self.backend_ttft[key],
            "tok_s": rate,
        }

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()


class DirectSide:
    """The same backend class, called in this process on the same prompt shape."""

    def __init__(self) -> None:
        self.backend = LlamaCppBackend(LlamaCppConfig())
        self.persona = load_persona(REPO / "persona.toml")

    async def one(self, i: int) -> dict[str, float] | None:
        rel = new_relationship("bench", self.persona)
        turns, max_tokens = build(
            persona=persona_rules(self.persona, rel),
            now=turn_rules(self.persona, deny_now=False, care_owed=False),
            profile="",
            memories=[],
            observation="",
            summary="",
            turns=[],
            message=MESSAGE,
            speaker="Bench",
            budgets=Budgets(),
            count=self.backend.count_tokens,
        )
        stream = self.backend.stream(
            turns, Params(max_tokens=max_tokens, temperature=0.7, seed=SEED)
        )
        t0 = time.perf_counter()
        stamps = [time.perf_counter() async for _ in stream]
        if len(stamps) < 2:
            return None
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        progress(
            f"direct {i}: ttft {(stamps[0] - t0) * 1000:.1f} ms, {len(stamps)} tokens, {rate:.1f} tok/s"
        )
        return {"ttft_ms": (stamps[0] - t0) * 1000, "tok_s": rate}


async def bursts(hx: Hex, n: int) -> dict[str, list[float]]:
    """One line, then a three-line burst, each in a fresh conversation, ``n`` times."""
    actor = ActorSide(hx)
    await actor.start()
    out: dict[str, list[float]] = {"single_reply_s": [], "burst_last_reply_s": []}
    try:
        for i in range(n):
            single = await actor.lines(f"s{i}", (BURST[-1],))
            burst = await actor.lines(f"t{i}", BURST)
            progress(f"burst {i}: one line {single:.2f} s, the last of three {burst:.2f} s")
            out["single_reply_s"].append(single)
            out["burst_last_reply_s"].append(burst)
    finally:
        await actor.close()
    return out


async def alternate(hx: Hex, n: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Direct, then through the actor, message by message (the machine's noise hits both alike)."""
    actor, direct = ActorSide(hx), DirectSide()
    await direct.backend.start()
    await actor.start()
    a: dict[str, list[float]] = {}
    d: dict[str, list[float]] = {}
    try:
        for i in range(n + 1):  # the first of each warms caches and is not counted
            for side, out in ((direct, d), (actor, a)):
                figures = await side.one(i)
                if i and figures:
                    for k, v in figures.items():
                        out.setdefault(k, []).append(v)
    finally:
        await actor.close()
        await direct.backend.close()
    return a, d


def main() -> None:
    args = parser(__doc__).parse_args()
    configure("bench", "warning")  # stdout is the JSON only
    n = 4 if args.quick else 12
    hx = Hex(FAST_BUS)
    hx = Hex(config(hx.root), root=hx.root)
    try:
        progress("starting Hex with the brain")
        hx.start()
        actor, base = run_async(alternate(hx, n))
        burst = run_async(bursts(hx, max(3, n // 2)))
    finally:
        hx.cleanup()
    direct_rate = sum(base["tok_s"]) / len(base["tok_s"])
    actor_rate = sum(actor["tok_s"]) / len(actor["tok_s"])
    result: dict[str, Any] = {
        "bench": "brain",
        "quick": args.quick,
        "messages": n,
        **summary(actor["overhead_ms"], "overhead_ms", 2),
        **summary(actor["first_chunk_ms"], "first_chunk_ms", 1),
        **summary(actor["backend_ttft_ms"], "backend_ttft_ms", 1),
        **summary(base["ttft_ms"], "direct_ttft_ms", 1),
        "direct_tok_s": round(direct_rate, 1),
        "actor_tok_s": round(actor_rate, 1),
    }
    result |= summary(burst["single_reply_s"], "single_reply_s", 2)
    result |= summary(burst["burst_last_reply_s"], "burst_last_reply_s", 2)
    result["burst_over_single"] = round(
        result["burst_last_reply_s_p50"] / result["single_reply_s_p50"], 2
    )
    result["first_chunk_overhead_ms"] = result["overhead_ms_p50"]
    result["throughput_ratio_vs_direct"] = round(actor_rate / direct_rate, 3)
    result["target_overhead_ms"] = 10
    result["target_throughput_ratio"] = 0.95
    emit(result)


if __name__ == "__main__":
    main()
