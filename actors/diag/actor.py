"""Diagnostic actors: small, real actors the tests, benchmarks and `hexbus send` use.

They exercise the runtime exactly as the companion's actors do; nothing here is
faked. ``CounterActor`` counts durable probes, ``EchoActor`` acknowledges chat
messages at once (the responder in bench/isolation.py), and the rest misbehave
on purpose so the supervisor's answers can be seen.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import ClassVar, TypeVar

import msgspec
import zmq

from hexbus import Actor, NoConfig, NoState, RequestTimeout, on
from hexbus.endpoints import connect_address
from schemas import (
    ChatAck,
    ChatMessage,
    MemoryHit,
    MemoryQuery,
    MemoryResult,
    ProbeDurable,
    ProbeVolatile,
    tag_of,
)


class CountState(msgspec.Struct):
    count: int = 0
    total: int = 0  # sum of probe numbers, to catch a duplicate that replaces a loss
    last_n: int = 0


C = TypeVar("C", bound=msgspec.Struct)


class Counting(Actor[C, CountState]):
    """What the counting actors share: the tally, and the answer to ``count?`` probes."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.durable", "probe.volatile.count")
    state_type = CountState

    def tally(self, event: ProbeDurable) -> None:
        self.state.count += 1
        self.state.total += event.n
        self.state.last_n = event.n

    @on(ProbeVolatile)
    async def report(self, event: ProbeVolatile) -> None:
        if event.note == "count?":
            await self.respond(ProbeVolatile(n=self.state.count, note=f"total={self.state.total}"))


class CounterActor(Counting[NoConfig]):
    """Counts every durable probe exactly once, across crashes; answers ``count?`` probes."""

    @on(ProbeDurable)
    async def count(self, event: ProbeDurable) -> None:
        self.tally(event)


class ReplayCheckActor(Counting[NoConfig]):
    """Counts durable probes (2 ms each) and, in memory, which it handled before :meth:`on_live`
    and which of those saw ``self.live`` true: ``count?`` answers ``n`` = count and
    ``note`` = "before_live=B seen_live=S" (a replayed event must see the actor not live)."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.durable", "probe.volatile.replay")

    async def setup(self) -> None:
        self.before_live = self.seen_live = 0
        self.on_live_called = False

    async def on_live(self) -> None:
        self.on_live_called = True

    @on(ProbeDurable)
    async def count(self, event: ProbeDurable) -> None:
        await asyncio.sleep(0.002)  # a handler that awaits, as real ones do (I/O, a model)
        self.tally(event)
        if not self.on_live_called:
            self.before_live += 1
            self.seen_live += self.live

    @on(ProbeVolatile)
    async def report(self, event: ProbeVolatile) -> None:
        if event.note == "replay?":
            note = f"before_live={self.before_live} seen_live={self.seen_live}"
            await self.respond(ProbeVolatile(n=self.state.count, note=note))


class AskerActor(Actor[NoConfig, NoState]):
    """On ``ask N`` (``probe.volatile.asker-go``), asks the counter ``count?`` N times through
    :meth:`Actor.request`, each time with its answers' subscription made afresh, as for an
    actor's first request of a kind; answers ``n`` = how many were answered, ``note`` = the
    first failure."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.volatile.asker-go",)

    @on(ProbeVolatile)
    async def ask(self, event: ProbeVolatile) -> None:
        if not event.note.startswith("ask "):
            return
        answered, failure = 0, ""
        topic = f"{tag_of(ProbeVolatile)}.{self.name}"
        for _ in range(int(event.note.split()[1])):
            # The next request subscribes, as if it were the first.
            self.bus.unsubscribe(topic)
            self._reply_paths.pop((topic, False), None)
            try:
                # 10 s: an answer slowed by a loaded machine is not taken for a lost one
                await self.request(
                    ProbeVolatile(n=0, note="count?"), ProbeVolatile, key="count", timeout=10.0
                )
                answered += 1
            except RequestTimeout as exc:
                failure = failure or str(exc)
        await self.respond(ProbeVolatile(n=answered, note=failure))


class EchoActor(Actor[NoConfig, NoState]):
    """Acknowledges each chat message the moment it arrives (the typing-indicator path)."""

    subscribes: ClassVar[tuple[str, ...]] = ("chat.message",)

    @on(ChatMessage)
    async def ack(self, event: ChatMessage) -> None:
        envelope = self.envelope
        await self.publish(
            ChatAck(message_event_id=envelope.id if envelope else "", channel=event.channel)
        )


class HangConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hang_after_s: float = 0.0  # 0: hang only when a probe.volatile.hang arrives


class HangActor(Actor[HangConfig, NoState]):
    """Blocks its own event loop (as a stuck model call would) so the supervisor must restart it."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.volatile.hang",)
    config_type = HangConfig

    async def setup(self) -> None:
        if self.config.hang_after_s > 0:
            asyncio.get_running_loop().call_later(self.config.hang_after_s, self._block)

    def _block(self) -> None:
        self.log.warning("diag.hanging", pid=os.getpid())
        while True:
            time.sleep(3600)

    @on(ProbeVolatile)
    async def hang(self, event: ProbeVolatile) -> None:
        self._block()


class HungBrainActor(HangActor):
    """A brain that takes every chat message and never answers: it hangs (``hang_after_s`` after each
    start, or on its first message) and the supervisor kills and restarts it, over and over."""

    subscribes: ClassVar[tuple[str, ...]] = ("chat.message", "probe.volatile.hang")

    @on(ChatMessage)
    async def think(self, event: ChatMessage) -> None:
        if self.config.hang_after_s <= 0:
            self._block()


class PoisonConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fixed: bool = False  # true: the "bug" is fixed, poison probes are counted like the others


class PoisonActor(Counting[PoisonConfig]):
    """Counts durable probes, but one whose note is ``raise`` makes its handler raise and one whose
    note is ``die`` kills the process, until ``fixed`` is set: dead letters, seen from outside."""

    config_type = PoisonConfig

    @on(ProbeDurable)
    async def count(self, event: ProbeDurable) -> None:
        if not self.config.fixed and event.note == "raise":
            raise ValueError(f"diag poison actor: cannot apply probe {event.n}")
        if not self.config.fixed and event.note == "die":
            os._exit(70)  # as a segfault in a native library would: no cleanup, no snapshot
        self.tally(event)


class CrashActor(Actor[NoConfig, NoState]):
    """Crashes during start, every time (a flapping actor)."""

    async def setup(self) -> None:
        raise RuntimeError("diag crash actor: failing at start on purpose")


class StallConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prefix: str = "probe.volatile"


class StallActor(Actor[StallConfig, NoState]):
    """Subscribes to a volatile family and then never reads its socket again."""

    config_type = StallConfig

    async def setup(self) -> None:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        sock.rcvhwm = 10
        sock.linger = 0
        sock.subscribe(self.config.prefix.encode())
        sock.connect(connect_address(self.bus.endpoints.volatile_out))
        sock.connect(connect_address(self.bus.endpoints.volatile_big))
        self._stalled = sock  # kept open, never read


class SinkState(msgspec.Struct):
    seen: int = 0


class SinkActor(Actor[NoConfig, SinkState]):
    """Subscribes to volatile probes and counts them (a healthy subscriber beside a stalled one)."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.volatile.flood",)
    state_type = SinkState

    @on(ProbeVolatile)
    async def seen(self, event: ProbeVolatile) -> None:
        self.state.seen += 1


class BusyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    work_s: float = 2.0


def _sleep_and_report(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


class BusyActor(Actor[BusyConfig, NoState]):
    """Does long blocking work the right way (off the loop), so its heartbeats never stop."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.volatile.busy",)
    config_type = BusyConfig

    @on(ProbeVolatile)
    async def work(self, event: ProbeVolatile) -> None:
        if event.note == "process":
            worker = await self.offload_process(_sleep_and_report, self.config.work_s)
        else:
            worker = await self.offload(_sleep_and_report, self.config.work_s)
        await self.respond(ProbeVolatile(n=worker, note=f"done:{event.note}"))


class HogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    grow_mb_per_s: int = 50


class HogActor(Actor[HogConfig, NoState]):
    """Grows its memory steadily (a leak) until the supervisor's RSS limit stops it."""

    config_type = HogConfig

    async def setup(self) -> None:
        self._hoard: list[bytearray] = []
        self.spawn(self._grow(), name="grow")

    async def _grow(self) -> None:
        while True:
            chunk = bytearray(self.config.grow_mb_per_s << 17)  # an eighth of the per-second amount
            chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page so it counts in RSS
            self._hoard.append(chunk)
            await asyncio.sleep(0.125)


class SlowMemoryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    delay_s: float = 5.0


class SlowMemoryActor(Actor[SlowMemoryConfig, NoState]):
    """Answers every memory query, late: the brain must not wait for it past its deadline."""

    subscribes: ClassVar[tuple[str, ...]] = ("memory.query",)
    config_type = SlowMemoryConfig

    @on(MemoryQuery)
    async def answer(self, event: MemoryQuery) -> None:
        await asyncio.sleep(self.config.delay_s)
        await self.respond(
            MemoryResult(hits=(MemoryHit(id="late", text=f"late answer to {event.text!r}"),))
        )
