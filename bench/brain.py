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
- streaming rate: chunks from the first to the last, over that time.

Baseline, in the same run and process: the same backend class called directly
(``LlamaCppBackend.stream`` on the same prompt shape), its tokens/s from first
to last piece. Rounds alternate direct and through-the-actor.
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
from actors.brain.persona import load_persona, new_relationship, system_prompt
from actors.brain.prompt import Budgets, build
from bench._common import emit, parser, progress, run_async, summary
from hexbus.bus import BusClient
from hexbus.log import configure
from schemas import ChatMessage, Metric, Reply, ReplyChunk
from tests.harness import FAST_BUS, REPO, Hex

MESSAGE = ("Tell me a story about a goblin who collects shiny spoons, where she finds them, which one she "
           "likes best, and what she does when somebody tries to take one away from her, please.")
SEED = 3


def config(root: Path) -> str:
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    return FAST_BUS + f"""
[actors.brain]
module = "actors.brain.actor:BrainActor"
heartbeat_timeout_s = 10.0
[actors.brain.config]
backends = [{{type = "llamacpp"}}]
seed = {SEED}
memory = false
metadata = false
"""


async def through_actor(hx: Hex, n: int) -> dict[str, list[float]]:
    client = BusClient(hx.endpoints, "bench-brain")
    client.subscribe("chat.reply.chunk")
    client.subscribe("metrics.brain")
    client.start()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    chunks: dict[str, int] = {}
    backend_ttft: dict[str, float] = {}
    tokens: dict[str, int] = {}

    async def read() -> None:
        async for envelope, _ in client.volatile():
            body, now = envelope.body, time.perf_counter()
            if isinstance(body, ReplyChunk):
                first.setdefault(body.reply_to, now)
                last[body.reply_to] = now
                chunks[body.reply_to] = chunks.get(body.reply_to, 0) + 1
            elif isinstance(body, Metric) and body.name == "brain.first_token":
                backend_ttft[body.labels.get("reply_to", "")] = body.value
            elif isinstance(body, Metric) and body.name == "brain.tokens.completion":
                tokens[body.labels.get("reply_to", "")] = int(body.value)

    feed = client.durable(["chat.reply"], after=-1, wait_ms=200)
    finals: set[str] = set()

    async def replies() -> None:
        async for envelope, _ in feed:
            if envelope is not None and isinstance(envelope.body, Reply):
                finals.add(envelope.body.reply_to)

    tasks = [asyncio.create_task(read()), asyncio.create_task(replies())]
    out: dict[str, list[float]] = {"first_chunk_ms": [], "backend_ttft_ms": [], "overhead_ms": [], "tok_s": []}
    try:
        while feed.after < 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        for i in range(n + 1):  # the first one warms the model's caches and is not counted
            event = ChatMessage(platform="console", person_id=f"bench{i}", display_name="Bench", channel=f"b{i}",
                                text=MESSAGE, direct=True)
            sent = time.perf_counter()
            envelope = await client.publish_durable(event, key="console")
            deadline = time.monotonic() + 120
            while envelope.id not in finals or envelope.id not in backend_ttft or envelope.id not in tokens:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no reply or no first-token metric for message {i}")
                await asyncio.sleep(0.005)
            if i == 0 or envelope.id not in first:
                continue
            first_ms = (first[envelope.id] - sent) * 1000
            out["first_chunk_ms"].append(first_ms)
            out["backend_ttft_ms"].append(backend_ttft[envelope.id])
            out["overhead_ms"].append(first_ms - backend_ttft[envelope.id])
            # Chunks coalesce pieces (chunk_interval_ms), so the rate counts the reply's tokens: all but
            # the first token arrived between the first chunk and the last.
            span = last[envelope.id] - first[envelope.id]
            if tokens[envelope.id] > 1 and span > 0:
                out["tok_s"].append((tokens[envelope.id] - 1) / span)
            progress(f"actor {i}: first chunk {first_ms:.1f} ms, backend ttft {backend_ttft[envelope.id]:.1f} ms, "
                     f"{tokens[envelope.id]} tokens in {chunks[envelope.id]} chunks")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    return out


async def direct(n: int) -> dict[str, list[float]]:
    backend = LlamaCppBackend(LlamaCppConfig())
    await backend.start()
    persona = load_persona(REPO / "persona.toml")
    out: dict[str, list[float]] = {"ttft_ms": [], "tok_s": []}
    try:
        for i in range(n + 1):
            rel = new_relationship("bench", persona)
            turns, max_tokens = build(persona=system_prompt(persona, rel, deny_now=False, care_owed=False),
                                      profile="", memories=[], observation="", summary="", turns=[],
                                      message=MESSAGE, speaker="Bench", budgets=Budgets(),
                                      count=backend.count_tokens)
            stream = backend.stream(turns, Params(max_tokens=max_tokens, temperature=0.7, seed=SEED))
            t0 = time.perf_counter()
            stamps = [time.perf_counter() async for _ in stream]
            if i == 0 or len(stamps) < 2:
                continue
            out["ttft_ms"].append((stamps[0] - t0) * 1000)
            out["tok_s"].append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
            progress(f"direct {i}: ttft {out['ttft_ms'][-1]:.1f} ms, {len(stamps)} pieces")
    finally:
        await backend.close()
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    configure("bench", "warning")  # stdout is the JSON only
    n = 4 if args.quick else 12
    progress("direct backend calls")
    base = run_async(direct(n))
    hx = Hex(FAST_BUS)
    hx = Hex(config(hx.root), root=hx.root)
    try:
        progress("starting Hex with the brain")
        hx.start()
        actor = run_async(through_actor(hx, n))
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
    result["first_chunk_overhead_ms"] = result["overhead_ms_p50"]
    result["throughput_ratio_vs_direct"] = round(actor_rate / direct_rate, 3)
    result["target_overhead_ms"] = 10
    result["target_throughput_ratio"] = 0.95
    emit(result)


if __name__ == "__main__":
    main()
