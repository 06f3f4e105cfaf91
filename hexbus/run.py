"""The one entrypoint that runs any actor class in its own process on uvloop.

    python -m hexbus.run actors.counter.actor:CounterActor --name counter

The supervisor passes the rest (endpoints, bus settings, data folder, the
actor's config table) as JSON in HEXBUS_SPEC. Exit code 2 means a
configuration problem the supervisor must not retry.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec
import psutil
import structlog
import zmq

from hexbus import codec
from hexbus._process import die_with_parent
from hexbus.actor import Actor, ActorUnusable
from hexbus.bus import BusClient
from hexbus.config import ActorSpec, BusConfig
from hexbus.deadletter import CrashMarker
from hexbus.endpoints import Endpoints
from hexbus.log import configure
from hexbus.models import ModelMissing
from hexbus.runtime import Runtime
from hexbus.snapshots import load_snapshot
from schemas import CONTROL_TAGS, Heartbeat

EXIT_CONFIG = 2


class ActorProcessSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    endpoints: Endpoints
    bus: BusConfig
    data_dir: str
    actor: ActorSpec
    config_dir: str = (
        ""  # the folder of supervisor.toml: actors resolve relative paths in their config here
    )
    run_dir: str = ""  # the supervisor's run directory (0700): files only this user may read
    config_file: str = (
        ""  # supervisor.toml itself (selfmod's sandbox reads the brain's table there)
    )


class ActorConfigError(Exception):
    pass


def load_class(target: str) -> type[Actor[Any, Any]]:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ActorConfigError(f"cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise ActorConfigError(f"{target!r} is not a hexbus.Actor subclass")
    return cls


def actor_config(cls: type[Actor[Any, Any]], name: str, table: dict[str, Any]) -> msgspec.Struct:
    try:
        return msgspec.convert(table, cls.config_type, strict=True)
    except msgspec.ValidationError as exc:
        from hexbus.config import _humanize

        raise ActorConfigError(
            f"supervisor.toml: {_humanize(exc, f'actors.{name}.config')}"
        ) from None


async def serve(cls: type[Actor[Any, Any]], spec: ActorProcessSpec, config: msgspec.Struct) -> int:
    name = spec.name
    log = structlog.get_logger(f"actors.{name}")
    bus = BusClient(
        spec.endpoints,
        name,
        outbox=spec.bus.outbox_events,
        volatile_hwm=spec.bus.volatile_hwm,
        blob_lane_bytes=spec.bus.blob_lane_bytes,
        blob_hwm=spec.bus.blob_hwm,
    )
    bus.start()
    data_dir = Path(spec.data_dir) / "actors" / name
    snapshot_path = data_dir / "snapshot.msgpack"
    state, offset, recent, dead, epoch = load_snapshot(snapshot_path, cls.state_type, log)
    actor = cls(name, config, state if state is not None else cls.state_type(), bus, data_dir)
    actor.config_dir = Path(spec.config_dir) if spec.config_dir else Path.cwd()
    actor.run_dir = Path(spec.run_dir) if spec.run_dir else None
    actor.config_file = Path(spec.config_file) if spec.config_file else None
    process = psutil.Process()
    hb_sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    hb_sock.linger = 0
    hb_sock.sndhwm = 10
    hb_sock.immediate = True
    hb_sock.connect(spec.endpoints.heartbeat)

    def heartbeat(rt: Runtime) -> None:
        beat = Heartbeat(
            actor=name,
            pid=os.getpid(),
            state=rt.state,  # type: ignore[arg-type]
            events_in=rt.events_in,
            events_out=bus.events_out,
            dropped=rt.dropped + bus.volatile_dropped,
            rejected=bus.rejected.total,
            applied_offset=rt.applied,
            rss_bytes=process.memory_info().rss,
            cpu_seconds=round(sum(process.cpu_times()[:2]), 3),
            detail=actor.detail[:200],
            oldest_work_s=rt.oldest_work_s(),
            handler_counts=tuple(rt.handler_counts),
            handler_ms_sum=round(rt.handler_ms_sum, 3),
        )
        envelope = bus.publish_volatile(beat, key=name)
        try:
            hb_sock.send_multipart(codec.message_frames(envelope), zmq.NOBLOCK)
        except zmq.Again:
            pass

    runtime = Runtime(
        actor,
        snapshot_every=spec.actor.snapshot_every,
        snapshot_interval_s=spec.actor.snapshot_interval_s,
        heartbeat_interval_s=spec.bus.heartbeat_interval_s,
        heartbeat=heartbeat,
        snapshot_path=snapshot_path,
        applied_offset=offset,
        recent_ids=recent,
        dead_offsets=dead,
        dead_letter_after=spec.actor.dead_letter_after,
        retry_backoff_s=spec.actor.retry_backoff_s,
        crash_marker=CrashMarker(data_dir / "inflight"),
        epoch=epoch,
    )
    if runtime.crash_marker is not None and runtime.crash_marker.crashes:
        log.warning(
            "actor.died_handling",
            offset=runtime.crash_marker.crashed_offset,
            times=runtime.crash_marker.crashes,
            dead_letter_after=spec.actor.dead_letter_after,
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stopping.set)
    for prefix in cls.subscribes:
        bus.subscribe(prefix)
    for tag in CONTROL_TAGS:
        bus.subscribe(f"{tag}.{name}")
    log.info(
        "actor.starting",
        module=spec.actor.module,
        applied_offset=offset,
        restored=state is not None,
    )
    tasks = [
        loop.create_task(runtime.timers(), name="timers"),
        loop.create_task(runtime.read_volatile(), name="volatile"),
        loop.create_task(runtime.snapshots.run(), name="snapshots"),
    ]
    code = 0
    clean = True
    stop_by: float | None = None  # once a stop begins: the supervisor SIGKILLs at stop_grace_s
    try:
        await actor.setup()
        resume = actor.resume_offset()
        if resume is not None and resume != runtime.applied:
            log.info(
                "actor.resume_from_store", store_offset=resume, snapshot_offset=runtime.applied
            )
            if resume < runtime.applied:
                # The store is behind the snapshot (events it never commits, or a store restored
                # from an older copy): everything after its offset is handled again, so the
                # snapshot's recent ids must not skip any of it. Dead-lettered offsets stay dead.
                runtime.recent.clear()
            runtime.applied = resume
        if cls.subscribes:
            runtime.state = "replaying"
            prefixes = [*cls.subscribes, runtime.redrive_topic]
            tasks.append(loop.create_task(runtime.read_durable(prefixes), name="durable"))
        else:
            runtime.state = "live"
            actor.live = True
            heartbeat(runtime)
            await actor.on_live()
        dispatch = loop.create_task(runtime.dispatch(), name="dispatch")
        stop = loop.create_task(runtime.stopping.wait())
        done, _ = await asyncio.wait({dispatch, stop}, return_when=asyncio.FIRST_COMPLETED)
        if dispatch in done and dispatch.exception() is not None:
            raise dispatch.exception()  # type: ignore[misc]
        runtime.stopping.set()
        runtime.wake.set()
        stop.cancel()
        stop_by = loop.time() + spec.actor.stop_grace_s * 0.9
        try:
            await asyncio.wait_for(asyncio.shield(dispatch), spec.actor.stop_grace_s / 3)
        except TimeoutError:
            # A handler that will not finish: cancel it, and keep the last snapshot rather than
            # saving a half-applied event (replay redoes it on the next start).
            log.warning("actor.handler_cancelled_on_stop", grace_s=spec.actor.stop_grace_s / 3)
            dispatch.cancel()
            await asyncio.gather(dispatch, return_exceptions=True)
            clean = False
    except (ActorUnusable, ModelMissing) as exc:
        log.error("actor.unusable", reason=str(exc))
        print(f"hexbus: {name}: {exc}", file=sys.stderr)
        write_exit_reason(data_dir, str(exc))
        code = EXIT_CONFIG
        clean = False
    except Exception:
        log.exception("actor.crashed")
        code = 1
    runtime.state = "stopping"
    deadline = stop_by if stop_by is not None else loop.time() + spec.actor.stop_grace_s * 0.9

    def left(share: float = 1.0) -> float:
        """A share of the time left before the deadline, for one stage of stopping."""
        return max(0.05, (deadline - loop.time()) * share)

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await actor.stop_tasks(left(1 / 3))
    if code == 0:
        if clean and not runtime.unclean:
            await runtime.snapshot()
        flushed = await bus.flush(left(1 / 2))
        if not flushed:
            log.warning("actor.unflushed", pending=len(bus.producer.outbox))
        if not await runtime.snapshots.save_ready():
            # Saved, it would record effects the broker never stored: the next start replays
            # from the last snapshot saved and redoes them instead.
            log.warning(
                "actor.snapshot_unsaved",
                reason="the broker did not acknowledge what it records before the stop",
            )
        try:
            await asyncio.wait_for(actor.teardown(), left())
        except Exception:
            log.exception("actor.teardown_failed")
    actor.shutdown_executors()
    if runtime.crash_marker is not None:
        runtime.crash_marker.close()
    await bus.close()
    hb_sock.close(linger=0)
    log.info("actor.stopped", applied_offset=runtime.applied, code=code)
    return code


EXIT_REASON = "exit_reason.txt"


def write_exit_reason(data_dir: Path, reason: str) -> None:
    """The one line the supervisor shows for an actor that exits with code 2."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / EXIT_REASON).write_text(" ".join(reason.split())[:500] + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hexbus.run", description=__doc__)
    parser.add_argument("target", help="package.module:ClassName")
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    raw = os.environ.get("HEXBUS_SPEC")
    if not raw:
        print(
            "hexbus.run: HEXBUS_SPEC is not set; actors are started by `hexbus run supervisor.toml`",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_CONFIG)
    spec = msgspec.json.decode(raw, type=ActorProcessSpec)
    configure(args.name, os.environ.get("HEXBUS_LOG_LEVEL", "info"))
    die_with_parent()
    try:
        cls = load_class(args.target)
        config = actor_config(cls, args.name, spec.actor.config)
    except ActorConfigError as exc:
        structlog.get_logger("hexbus.run").error("actor.config_error", error=str(exc))
        print(f"hexbus: {exc}", file=sys.stderr)
        write_exit_reason(Path(spec.data_dir) / "actors" / args.name, str(exc))
        raise SystemExit(EXIT_CONFIG) from None
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    raise SystemExit(runner(serve(cls, spec, config)))


if __name__ == "__main__":
    main()
