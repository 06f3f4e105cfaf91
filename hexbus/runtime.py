"""The runtime that drives one actor: replay, dispatch with control first, retries and dead
letters, snapshots and heartbeats. :mod:`hexbus.run` builds one per process; :mod:`hexbus.testing`
drives one on an in-memory bus.

Dispatch order: control events (stop, ping, snapshot, reload) first, then durable and
volatile events in turn. A durable event is applied once: offsets at or below the applied
offset and recently applied ids are skipped; a handler that raises is retried with backoff,
and dead-lettered (:mod:`hexbus.deadletter`) after ``dead_letter_after`` failures or process
deaths; a dead-lettered offset is saved in a snapshot at once and skipped by every later
process. Snapshots (state, applied offset, recent ids, dead offsets) are written between
handlers only, and not at all after a stop that came between two retries of a handler, so no
half-applied event is ever saved.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from hexbus.actor import Actor, _current
from hexbus.codec import Envelope
from hexbus.deadletter import REDRIVEN, CrashMarker, Letters
from hexbus.feed import Rewind
from hexbus.files import RoomWait, disk_full, out_of_space
from hexbus.snapshots import SnapshotFile, Snapshots
from schemas import (
    CONTROL_TAGS,
    HANDLER_BUCKETS_MS,
    ActorLifecycle,
    Delivery,
    PathCheck,
    Ping,
    Pong,
    Redrive,
    Rejected,
    Reload,
    Snapshot,
    Stop,
    delivery_of,
    tag_of,
)

S = TypeVar("S", bound=msgspec.Struct)


class Outcome(enum.Enum):
    APPLIED = "applied"
    DEAD = "dead"  # dead-lettered: applied in the sense that the actor goes on without it
    STOPPED = "stopped"  # a stop came between retries: not applied


APPLIED, DEAD, STOPPED = Outcome.APPLIED, Outcome.DEAD, Outcome.STOPPED


class Runtime:
    """Drives one actor: replay, dispatch with control first, snapshots, heartbeats, graceful stop."""

    def __init__(
        self,
        actor: Actor[Any, Any],
        *,
        snapshot_every: int,
        snapshot_interval_s: float,
        heartbeat_interval_s: float,
        heartbeat: Callable[[Runtime], None],
        snapshot_path: Path,
        applied_offset: int,
        recent_ids: list[str],
        dead_offsets: list[int] | None = None,
        dead_letter_after: int = 3,
        retry_backoff_s: float = 0.1,
        crash_marker: CrashMarker | None = None,
        epoch: str = "",
    ) -> None:
        self.actor = actor
        self.epoch = epoch
        self.bus = actor.bus
        self.snapshot_every = snapshot_every
        self.snapshot_interval_s = snapshot_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.send_heartbeat = heartbeat
        self.snapshot_path = snapshot_path
        self.snapshots = Snapshots(snapshot_path, self.bus, actor.offload, applied_offset)
        self.applied = applied_offset
        self.recent: OrderedDict[str, None] = OrderedDict((i, None) for i in recent_ids)
        self.control: deque[tuple[Envelope, bytes | None]] = deque()
        self.volatile: deque[tuple[Envelope, bytes | None]] = deque()
        self.volatile_bytes = 0
        self.durable: asyncio.Queue[tuple[Envelope | None, Any]] = asyncio.Queue(maxsize=1024)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.state = "starting"
        self.events_in = 0
        self.handler_counts = [0] * (len(HANDLER_BUCKETS_MS) + 1)
        self.handler_ms_sum = 0.0
        self.dropped = 0
        self.since_snapshot = 0
        self.snapshot_at = time.monotonic()
        self.dirty = False
        self.snapshot_due = False
        self.snapshot_now = False
        self.control_tags = {f"{tag}.{actor.name}" for tag in CONTROL_TAGS}
        self.dead_letter_after = dead_letter_after
        self.retry_backoff_s = retry_backoff_s
        self.crash_marker = crash_marker
        self.redrive_topic = f"{tag_of(Redrive)}.{actor.name}"
        self.letters = Letters(actor.name, self.bus, actor.log)
        # Offsets given up on: skipped on every replay, whatever offset the actor resumes from.
        self.dead: OrderedDict[int, None] = OrderedDict((o, None) for o in dead_offsets or ())
        self.unclean = False  # stopped between retries: the state holds a half-applied event
        self.waiting: set[asyncio.Task[None]] = set()
        self.flush_timeout_s = 5.0
        self.applying_since: float | None = None  # when the durable handler running now began
        self.out_of_space = False  # the last handler failure was a full disk
        actor._state_changed = self.mark_dirty  # type: ignore[method-assign]

    def oldest_work_s(self) -> float:
        """Age of the oldest unfinished work (the actor's, or the durable handler running now);
        0 when there is none, and while replaying (nothing is late before the actor is live)."""
        if self.state != "live":
            return 0.0
        starts = [t for t in (self.actor.oldest_work(), self.applying_since) if t is not None]
        return round(time.monotonic() - min(starts), 1) if starts else 0.0

    def mark_dirty(self, now: bool = False) -> None:
        self.dirty = True
        if now:
            self.snapshot_now = True
            self.snapshot_due = True
            self.wake.set()

    # -- inputs ---------------------------------------------------------------

    async def read_volatile(self) -> None:
        async for envelope, blob in self.bus.volatile():
            future = self.actor._pending.get(envelope.correlation) if envelope.correlation else None
            # An answer, or the actor's own path check (its own request is never its answer)
            mine = envelope.source == self.actor.name and not isinstance(envelope.body, PathCheck)
            if future is not None and not future.done() and not mine:
                future.set_result((envelope, blob))
                continue
            if isinstance(envelope.body, PathCheck):
                continue  # a path check's echo after its answer: nothing for the handlers
            if envelope.topic in self.control_tags:
                if isinstance(envelope.body, Ping | Stop):
                    await self.run_control(
                        envelope, blob
                    )  # needs no state: answer at once, even mid-handler
                else:
                    self.control.append((envelope, blob))
            elif delivery_of(envelope.topic) is Delivery.DURABLE:
                continue  # durable events arrive through the feed, in order
            else:
                size = len(blob) if blob is not None else 0
                while self.volatile and (
                    len(self.volatile) >= self.actor.volatile_queue
                    or self.volatile_bytes + size > self.actor.volatile_queue_bytes
                ):
                    _, old = self.volatile.popleft()
                    self.volatile_bytes -= len(old) if old is not None else 0
                    self.dropped += 1
                self.volatile.append((envelope, blob))
                self.volatile_bytes += size
            self.wake.set()

    async def read_durable(self, prefixes: list[str]) -> None:
        feed = self.bus.durable(
            prefixes,
            self.applied,
            epoch=self.epoch,
            consumer=self.actor.name,
            saved=lambda: self.snapshots.saved_offset,
        )

        def live() -> None:
            # The feed has handed out the replay; the actor is live once it has handled it.
            # The marker is queued behind the replayed events: dispatch turns the actor live
            # there (`Actor.live` false while replayed events are handled, volatile events held
            # until then) and on_live sees the state they built.
            try:
                self.durable.put_nowait((_LIVE, None))
            except asyncio.QueueFull:
                waiting = asyncio.get_running_loop().create_task(self.durable.put((_LIVE, None)))
                self.waiting.add(waiting)  # the loop keeps only a weak reference
                waiting.add_done_callback(self.waiting.discard)
            self.wake.set()

        feed.on_live = live
        async for item in feed:
            await self.durable.put(item)
            self.wake.set()

    # -- dispatch -------------------------------------------------------------

    async def dispatch(self) -> None:
        turn = 0
        while not self.stopping.is_set():
            if self.snapshot_due:
                self.snapshot_due = False
                if self.snapshot_now:
                    await self.snapshot()
                else:
                    await self.maybe_snapshot()
            if self.control:
                await self.run_control(*self.control.popleft())
                continue
            has_durable = not self.durable.empty()
            has_volatile = bool(self.volatile) and self.state == "live"
            if not has_durable and not has_volatile:
                self.wake.clear()
                await self.wake.wait()
                continue
            turn ^= 1
            if has_durable and (turn or not has_volatile):
                envelope, extra = self.durable.get_nowait()
                if envelope is _LIVE:
                    self.state = "live"
                    self.actor.live = True
                    self.actor.log.info("actor.live", applied_offset=self.applied)
                    self.send_heartbeat(self)
                    try:
                        await self.actor.on_live()
                    except Exception:
                        self.actor.log.exception("actor.on_live_failed")
                    continue
                if envelope is None:
                    if isinstance(extra, Rewind):
                        await self.rewind(extra)
                        continue
                    if extra > self.applied:
                        self.applied = extra
                        self.dirty = True
                    await self.maybe_snapshot()
                    continue
                await self.apply_durable(envelope, extra)
            else:
                envelope, blob = self.volatile.popleft()
                self.volatile_bytes -= len(blob) if blob is not None else 0
                await self.call_handler(envelope, blob)

    async def rewind(self, rewind: Rewind) -> None:
        """Go on in the journal's new history (see :class:`~hexbus.feed.Rewind`), saved at once."""
        if rewind.after < self.applied:
            await self.actor.on_journal_rewind(rewind.after)
            self.applied = rewind.after
            # Offsets above it are new events now: none of them was given up on or seen.
            for offset in [o for o in self.dead if o > rewind.after]:
                del self.dead[offset]
        self.epoch = rewind.epoch
        if not self.unclean:
            await self.snapshot()

    async def apply_durable(self, envelope: Envelope, blob: bytes | None) -> None:
        offset = envelope.offset
        if offset <= self.applied:
            return
        future = self.actor._pending.get(envelope.correlation) if envelope.correlation else None
        outcome = APPLIED
        if future is not None and not future.done():
            future.set_result((envelope, blob))
        elif offset in self.dead:
            outcome = DEAD  # given up on by an earlier process: never handled again
        elif envelope.id not in self.recent:
            outcome = await self.apply(envelope, blob)
            if outcome is STOPPED:
                # Not applied, so the next process handles it; and no snapshot from here on,
                # since the failed attempts may have changed the state.
                self.unclean = True
                return
            self.remember(envelope.id)
        self.applied = offset
        self.dirty = True
        self.since_snapshot += 1
        if outcome is DEAD and offset not in self.dead:
            # The decision must outlive this process before the crash marker forgets the
            # deaths: a letter acknowledged, then a snapshot that skips the offset for good.
            self.dead[offset] = None
            while len(self.dead) > self.actor.dedup_window:
                self.dead.popitem(last=False)
            await self.bus.flush(self.flush_timeout_s)
            await self.snapshot()
        else:
            await self.maybe_snapshot()
        if self.crash_marker is not None:
            self.crash_marker.finish(offset)

    def remember(self, event_id: str) -> None:
        self.recent[event_id] = None
        if len(self.recent) > self.actor.dedup_window:
            self.recent.popitem(last=False)

    async def apply(self, envelope: Envelope, blob: bytes | None) -> Outcome:
        """Handle one durable event: retried with backoff while its handler raises, dead-lettered
        after ``dead_letter_after`` failures or process deaths."""
        offset = envelope.offset
        target, redrive = envelope, ""
        if envelope.topic == self.redrive_topic and isinstance(envelope.body, Redrive):
            original = await self.letters.redriven(envelope, self.recent)
            if original is None:
                return APPLIED  # reported; nothing to apply
            # The event as it first came, at the redrive's offset: a store that commits offsets
            # (memory) must never see one go backwards.
            target, redrive = msgspec.structs.replace(original, offset=offset), envelope.id
        marker = self.crash_marker
        crashes = marker.crashes_at(offset, envelope.id) if marker is not None else 0
        if crashes >= self.dead_letter_after:
            died = f"the process died {crashes} times while handling it"
            await self.letters.dead(target, blob, "crashed", crashes, died, redrive)
            return DEAD
        if marker is not None:
            marker.start(offset, envelope.id)
        self.applying_since = time.monotonic()
        try:
            return await self._apply(target, blob, redrive)
        finally:
            self.applying_since = None

    async def _apply(self, target: Envelope, blob: bytes | None, redrive: str) -> Outcome:
        offset = target.offset
        delay, attempts, waiting = self.retry_backoff_s, 0, None
        while True:
            failure = await self.call_handler(target, blob)
            if failure is None:
                if waiting is not None:
                    waiting.over()
                if redrive:
                    self.remember(REDRIVEN + target.id)
                    await self.letters.retried(target, attempts + 1, redrive)
                return APPLIED
            if self.out_of_space and disk_full(self.actor.data_dir):
                # Not the event's fault: it waits (and every event after it) until there is
                # room, instead of going to the dead letters in three quick tries. Waiting is
                # not work (never "hung"), and dying meanwhile is not the event's doing.
                if waiting is None:
                    waiting = RoomWait(self.actor, target.id)
                waiting.still(failure)
                delay = max(delay, 1.0)
                self.applying_since = None
                if self.crash_marker is not None:
                    self.crash_marker.finish(offset)
            else:
                attempts += 1
                if attempts >= self.dead_letter_after:
                    await self.letters.dead(target, blob, "raised", attempts, failure, redrive)
                    return DEAD
                self.actor.log.warning(
                    "actor.handler_retry",
                    event_id=target.id,
                    offset=offset,
                    attempt=attempts,
                    retry_in_s=delay,
                )
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
            except TimeoutError:
                pass
            if self.stopping.is_set():
                if self.crash_marker is not None:
                    self.crash_marker.finish(offset)  # a stop, not a death
                return STOPPED
            self.applying_since = time.monotonic()
            if self.crash_marker is not None:
                self.crash_marker.start(offset, target.id)
            delay = min(delay * 2, 5.0)

    async def call_handler(self, envelope: Envelope, blob: bytes | None) -> str | None:
        """Run the handler for one event; the error it raised (logged and reported), or None."""
        token = _current.set((envelope, [0]))
        blob_token = Actor._blob.set(blob)
        self.events_in += 1
        started = time.perf_counter()
        try:
            await self.actor.handle(envelope.body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.out_of_space = out_of_space(exc)
            if self.out_of_space:  # logged once per episode by _apply, not once a second
                return error
            self.actor.log.exception(
                "actor.handler_failed", event_id=envelope.id, topic=envelope.topic
            )
            _current.set(None)
            await self.bus.publish(
                ActorLifecycle(
                    actor=self.actor.name,
                    change="error",
                    pid=os.getpid(),
                    event_id=envelope.id,
                    event_type=envelope.topic,
                    reason=error[:500],
                ),
                key=f"{self.actor.name}.error",
            )
            return error
        finally:
            _current.reset(token)
            Actor._blob.reset(blob_token)
            ms = (time.perf_counter() - started) * 1000
            self.handler_counts[bisect.bisect_left(HANDLER_BUCKETS_MS, ms)] += 1
            self.handler_ms_sum += ms
        return None

    async def run_control(self, envelope: Envelope, blob: bytes | None) -> None:
        body = envelope.body
        match body:
            case Stop():
                self.actor.log.info("actor.stop_requested", reason=body.reason)
                self.stopping.set()
            case Ping():
                self.bus.publish_volatile(
                    Pong(
                        actor=self.actor.name,
                        nonce=body.nonce,
                        state=self.state,  # type: ignore[arg-type]
                        applied_offset=self.applied,
                    ),
                    key=envelope.source,
                    correlation=envelope.correlation,
                    causation=envelope.id,
                )
            case Snapshot():
                await self.snapshot()
            case Reload():
                await self.actor.on_reload()

    # -- state ----------------------------------------------------------------

    async def maybe_snapshot(self) -> None:
        if not self.dirty:
            return
        if (
            self.since_snapshot >= self.snapshot_every
            or time.monotonic() - self.snapshot_at >= self.snapshot_interval_s
        ):
            await self.snapshot()

    async def snapshot(self) -> None:
        """Take a snapshot of state and applied offset; it is saved (atomically, off the loop)
        once the broker holds every durable event published so far (:mod:`hexbus.snapshots`)."""
        data = msgspec.msgpack.encode(
            SnapshotFile(
                actor=self.actor.name,
                offset=self.applied,
                written_at=time.time(),
                state=msgspec.Raw(msgspec.msgpack.encode(self.actor.state)),
                recent_ids=list(self.recent),
                dead_offsets=list(self.dead),
                epoch=self.epoch,
            )
        )
        self.snapshot_at = time.monotonic()
        if not await self.snapshots.take(data, self.applied):
            return  # a publisher waits for room in the outbox: again at the next interval
        self.dirty = False
        self.snapshot_now = False
        self.since_snapshot = 0

    async def timers(self) -> None:
        while not self.stopping.is_set():
            self.send_heartbeat(self)
            rejected = self.bus.rejected
            if rejected.changed:
                rejected.changed = False
                self.bus.publish_volatile(
                    Rejected(
                        process=self.actor.name, counts=dict(rejected.counts), total=rejected.total
                    ),
                    key=self.actor.name,
                )
            if self.dirty:
                # Snapshots happen between handlers only, so no half-applied event is ever saved.
                self.snapshot_due = True
                self.wake.set()
            try:
                await asyncio.wait_for(self.stopping.wait(), self.heartbeat_interval_s)
            except TimeoutError:
                pass


# A marker on the durable queue, behind the replayed events: call on_live between handlers.
_LIVE: Envelope = Envelope(
    id="", topic="sys.control.live", source="", body=Stop(target="", reason="live marker")
)


__all__ = ["Runtime"]
