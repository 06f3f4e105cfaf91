"""The supervisor: starts the broker and every enabled actor, watches them, brings them back.

Erlang/OTP's vocabulary: each actor has a restart policy (permanent,
transient, temporary) and a restart intensity (at most ``max_restarts`` in
``restart_period_s``); past it the actor is marked failed and reported while
the rest keep running. Backoff doubles from ``backoff_initial_s`` up to
``backoff_max_s`` and resets once the actor reports live. Heartbeats come
straight to the supervisor (not through the broker), so a broker outage never
looks like every actor hanging. With ``bus.remote`` the supervisor runs actors only, on a
host of their own (the GPU box), connected over tcp+CURVE to the broker another host's
supervisor runs; each supervisor controls its own actors.

:class:`Supervisor` is one cohesive class, and this module is over 500 lines for it: every
control verb (restart, reload, kill switch, stop) and every exit it watches changes the
same watchers under their locks, in Circus's arbiter manner; the per-process parts live
in watcher.py.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

import msgspec
import structlog
import zmq
import zmq.asyncio

from actors.supervisor.environment import child_env, named_env
from actors.supervisor.watcher import Policy, Watcher, python_argv
from hexbus import codec, tunables
from hexbus import log as hexlog
from hexbus.broker import BrokerProcessSpec
from hexbus.bus import BusClient
from hexbus.capabilities import ENV as CAPABILITIES_ENV
from hexbus.capabilities import Capabilities, SwitchRefused
from hexbus.codec import RejectedFrame
from hexbus.config import ActorSpec, ConfigError, HexConfig, load, start_order
from hexbus.control import ControlReply, ControlRequest, encoder, request_decoder
from hexbus.endpoints import Endpoints, endpoints, ensure_run_dir
from hexbus.log import RateLimitedCounter
from hexbus.run import EXIT_CONFIG, EXIT_REASON, ActorProcessSpec
from schemas import ActorLifecycle, Heartbeat

log = structlog.get_logger("hexbus.supervisor")

BROKER = "broker"


class AlreadyRunning(Exception):
    pass


def actor_policy(spec: ActorSpec) -> Policy:
    """How the supervisor keeps one actor running, from its table."""
    return Policy(
        spec.restart,
        spec.max_restarts,
        spec.restart_period_s,
        spec.backoff_initial_s,
        spec.backoff_max_s,
        spec.heartbeat_timeout_s,
        spec.stop_grace_s,
        spec.memory_limit_mb,
        spec.gpu_memory_limit_mb,
        spec.work_timeout_s,
    )


class Supervisor:
    def __init__(
        self,
        config: HexConfig,
        config_path: Path,
        run_dir: Path,
        data_dir: Path,
        log_level: str = "info",
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.run_dir = ensure_run_dir(run_dir)
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.data_dir.stat().st_mode & 0o077:
            self.data_dir.chmod(0o700)  # journal, memories, snapshots: the owner's alone
        self.log_level = log_level
        self.endpoints: Endpoints = endpoints(config.bus, self.run_dir)
        self.watchers: dict[str, Watcher] = {}
        self.order: list[str] = []
        self.shutting_down = asyncio.Event()
        self.stopped = asyncio.Event()
        self.rejected = RateLimitedCounter(log)
        self.lifecycle: asyncio.Queue[tuple[ActorLifecycle, str]] = asyncio.Queue()
        self.bus: BusClient | None = None
        self.nvml: Any = None
        self.kill_epoch = 0  # counts kill switches: a start requested before one does not happen
        # The owner's switches live here, beside the kill switch: out of reach of what they limit.
        try:
            self.capabilities = Capabilities.load(self.data_dir)
        except SwitchRefused as exc:
            raise ConfigError(str(exc)) from None
        self._reloading = asyncio.Lock()
        self._lock_fd = self._lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = (
            set()
        )  # one-off work: spawns after backoff, restarts

    def _lock(self) -> int:
        fd = os.open(self.run_dir / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"a supervisor is already running with run directory {self.run_dir}: "
                "stop it with `hexbus stop`, or pass another --run-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    # -- building watchers ----------------------------------------------------

    def _base_env(
        self, extra: dict[str, str], named: Iterable[str] = (), passed: Iterable[str] = ()
    ) -> dict[str, str]:
        env = child_env(os.environ, named, extra, passed)
        env["HEXBUS_SUPERVISOR_PID"] = str(os.getpid())
        env["HEXBUS_LOG_LEVEL"] = self.log_level
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def broker_watcher(self) -> Watcher:
        b = self.config.supervisor.broker
        spec = BrokerProcessSpec(
            endpoints=self.endpoints, bus=self.config.bus, data_dir=str(self.data_dir)
        )
        env = self._base_env({"HEXBUS_SPEC": msgspec.json.encode(spec).decode()})
        policy = Policy(
            "permanent",
            b.max_restarts,
            b.restart_period_s,
            b.backoff_initial_s,
            b.backoff_max_s,
            b.heartbeat_timeout_s,
            b.stop_grace_s,
            b.memory_limit_mb,
        )
        return Watcher(BROKER, python_argv("hexbus.broker"), env, policy)

    def actor_watcher(self, name: str, spec: ActorSpec) -> Watcher:
        env = self._base_env(
            {**spec.env, **self._spec_env(name, spec)},
            named_env(spec.module, spec.config),
            spec.pass_env,
        )
        return Watcher(
            name,
            python_argv("hexbus.run", spec.module, "--name", name),
            env,
            actor_policy(spec),
            depends_on=list(spec.depends_on),
            fresh_env=lambda: self._spec_env(name, spec),
        )

    def _spec_env(self, name: str, spec: ActorSpec) -> dict[str, str]:
        """The actor's process spec, her settings (``settings.toml``, as selfmod keeps HEAD's)
        laid over its config as they are now: read at every start, so a restart takes a change."""
        tuned = self.settings().get(name)
        if tuned:
            spec = msgspec.structs.replace(spec, config=tunables.overlay(spec.config, tuned))
        process_spec = ActorProcessSpec(
            name=name,
            endpoints=self.endpoints,
            bus=self.config.bus,
            data_dir=str(self.data_dir),
            actor=spec,
            config_dir=str(self.config_path.resolve().parent),
            run_dir=str(self.run_dir),
            config_file=str(self.config_path.resolve()),
        )
        return {"HEXBUS_SPEC": msgspec.json.encode(process_spec).decode()}

    def settings(self) -> dict[str, dict[str, int | float]]:
        """Her settings by actor, checked against their bounds here, where they are applied: a
        file that fails them is refused whole (logged with the reason) and nothing is laid over."""
        modules = {n: s.module for n, s in self.config.actors.items()}
        path = tunables.live_path(self.data_dir, modules)
        if path is None:
            return {}
        unknown: list[str] = []
        try:
            found = tunables.read(path.read_bytes(), modules, unknown)
        except FileNotFoundError:
            return {}
        except (OSError, tunables.SettingsError) as exc:
            log.error(
                "supervisor.settings_refused",
                path=str(path),
                reason=str(exc),
                hint="the actors start on supervisor.toml's settings; "
                "`hexbus selfmod rollback` or `hexbus selfmod factory-reset --yes` mends it",
            )
            return {}
        if unknown:
            log.warning(
                "supervisor.settings_for_unknown_actors",
                actors=unknown,
                hint="supervisor.toml has no actor of these names now: their settings are ignored",
            )
        return found

    # -- lifecycle --------------------------------------------------------------

    def in_background(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run one-off work without waiting for it, holding a reference until it ends (the loop
        keeps only weak ones) and logging a failure rather than leaving it to the collector."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._background.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("supervisor.task_failed", task=name, exc_info=task.exception())

        task.add_done_callback(done)

    def emit(self, watcher: Watcher, change: str, **fields: Any) -> None:
        event = ActorLifecycle(actor=watcher.name, change=change, **fields)  # type: ignore[arg-type]
        log.info(f"actor.{change}", actor=watcher.name, **fields)
        self.lifecycle.put_nowait((event, f"{watcher.name}.{change}"))

    async def publish_lifecycle(self) -> None:
        # A queue, so a broker outage never stalls the supervisor's own loop.
        assert self.bus is not None
        while True:
            event, key = await self.lifecycle.get()
            await self.bus.publish_durable(event, key=key)

    async def spawn(self, watcher: Watcher) -> None:
        """Start ``watcher``'s process, unless it is not wanted, already running, or replaced."""
        watcher.restart_handle = None
        if self.shutting_down.is_set() or not watcher.wanted or watcher.running:
            return
        if self.watchers.get(watcher.name) is not watcher:
            return  # a reload replaced or removed it
        # The switches as they are now: a process restarted after a change starts obeying it.
        watcher.env[CAPABILITIES_ENV] = self.capabilities.to_json().decode()
        if watcher.fresh_env is not None:  # and her settings
            watcher.env.update(watcher.fresh_env())
        pid = await watcher.spawn()
        self.emit(watcher, "spawn", pid=pid, restarts=watcher.restarts)
        watcher.exit_task = asyncio.get_running_loop().create_task(self.wait_exit(watcher))
        if not watcher.wanted or self.shutting_down.is_set():
            await watcher.stop()  # stopped (the kill switch) while it was being started

    async def respawn(self, watcher: Watcher) -> None:
        """A restart after backoff: under the actor's control lock, like a requested restart,
        so the two never both start a process."""
        async with watcher.control_lock:
            await self.spawn(watcher)

    async def wait_exit(self, watcher: Watcher) -> None:
        proc = watcher.proc
        assert proc is not None
        code = await proc.wait()
        pid = proc.pid
        signum = -code if code < 0 else None
        reason = watcher.kill_reason or (
            f"killed by signal {signum}" if signum else f"exited with code {code}"
        )
        watcher.reason = reason
        watcher.rss_bytes = 0
        self.emit(
            watcher,
            "exit",
            pid=pid,
            returncode=code if code >= 0 else None,
            signal=signum,
            reason=reason,
        )
        if self.shutting_down.is_set() or not watcher.wanted:
            watcher.state = "stopped"
            return
        self.after_exit(watcher, code)

    def after_exit(self, watcher: Watcher, code: int) -> None:
        policy = watcher.policy
        if code == EXIT_CONFIG and watcher.name != BROKER:
            watcher.state = "failed"
            reason_file = self.data_dir / "actors" / watcher.name / EXIT_REASON
            try:
                reason = reason_file.read_text(encoding="utf-8").strip()
                reason_file.unlink()
            except OSError:
                reason = ""
            watcher.reason = reason or (
                "configuration error (exit 2): read its log line, fix supervisor.toml, "
                "`hexbus reload`"
            )
            self.emit(watcher, "failed", restarts=watcher.restarts, reason=watcher.reason)
            return
        if policy.restart == "temporary" or (policy.restart == "transient" and code == 0):
            watcher.state = "exited"
            return
        backoff = watcher.budget.on_exit(time.monotonic())
        if backoff is None:
            watcher.state = "failed"
            watcher.reason = (
                f"{len(watcher.budget.recent) + 1} exits within {policy.restart_period_s:g}s "
                f"(max_restarts = {policy.max_restarts}); last: {watcher.reason}"
            )
            self.emit(watcher, "failed", restarts=watcher.restarts, reason=watcher.reason)
            return
        watcher.restarts += 1
        watcher.state = "backoff"
        self.emit(
            watcher,
            "restart",
            restarts=watcher.restarts,
            backoff_s=round(backoff, 3),
            reason=watcher.reason,
        )
        loop = asyncio.get_running_loop()
        watcher.restart_handle = loop.call_later(
            backoff, lambda: self.in_background(self.respawn(watcher), f"spawn-{watcher.name}")
        )

    # -- watching ---------------------------------------------------------------

    async def read_heartbeats(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            try:
                envelope, _ = codec.decode_message(frames)
            except RejectedFrame as exc:
                self.rejected.add(exc.kind, exc.detail)
                continue
            beat = envelope.body
            if not isinstance(beat, Heartbeat):
                self.rejected.add("unexpected", f"{envelope.topic} on the heartbeat socket")
                continue
            watcher = self.watchers.get(beat.actor)
            if watcher is None or watcher.pid != beat.pid:
                continue  # a beat from a process we already replaced
            if watcher.on_beat(beat):
                log.info(
                    "actor.live",
                    actor=watcher.name,
                    pid=beat.pid,
                    start_to_live_s=round(watcher.live_at - watcher.started_at, 3),
                )

    async def monitor(self) -> None:
        interval = self.config.supervisor.status_interval_s
        next_measure = 0.0
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for watcher in list(self.watchers.values()):
                if not watcher.running or watcher.state == "stopping":
                    continue
                silent = now - watcher.last_beat_at
                if silent > watcher.policy.heartbeat_timeout_s:
                    reason = f"hung: no heartbeat for {silent:.1f}s (heartbeat_timeout_s = {watcher.policy.heartbeat_timeout_s:g})"
                    log.warning(
                        "actor.hung", actor=watcher.name, pid=watcher.pid, silent_s=round(silent, 2)
                    )
                    watcher.kill(reason)
                elif (stuck := watcher.stuck_for(now)) is not None:
                    limit = watcher.policy.work_timeout_s
                    reason = (
                        f"hung: its oldest work is {stuck:.1f}s old (work_timeout_s = {limit:g})"
                    )
                    log.warning(
                        "actor.stuck", actor=watcher.name, pid=watcher.pid, work_s=round(stuck, 1)
                    )
                    watcher.kill(reason)
            if now >= next_measure:
                next_measure = now + interval
                self.measure()

    def measure(self) -> None:
        for watcher in self.watchers.values():
            watcher.measure()
            limit = watcher.policy.memory_limit_mb
            if limit and watcher.rss_bytes > limit << 20 and watcher.state != "stopping":
                log.warning(
                    "actor.over_memory",
                    actor=watcher.name,
                    rss_mb=watcher.rss_bytes >> 20,
                    limit_mb=limit,
                )
                watcher.kill(
                    f"memory: RSS {watcher.rss_bytes >> 20} MB over memory_limit_mb = {limit}"
                )
        self.measure_gpu()

    def setup_gpu(self) -> None:
        """Measure each actor's GPU memory wherever NVML answers (`hexbus status`, the page,
        /metrics), and enforce gpu_memory_limit_mb with it."""
        limits = any(w.policy.gpu_memory_limit_mb for w in self.watchers.values())
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            log.info("gpu.measured", devices=pynvml.nvmlDeviceGetCount(), limits=limits)
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, driver errors
            if limits:
                log.info(
                    "gpu.limits_skipped",
                    reason=f"NVML unavailable: {exc}",
                    hint="install hex[gpu] on a machine with an NVIDIA driver to enforce gpu_memory_limit_mb",
                )

    def measure_gpu(self) -> None:
        if self.nvml is None:
            return
        nvml = self.nvml
        used: dict[int, int] = {}
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    used[proc.pid] = used.get(proc.pid, 0) + (proc.usedGpuMemory or 0)
        except Exception as exc:
            log.warning("gpu.measure_failed", error=str(exc))
            return
        for watcher in self.watchers.values():
            if not watcher.running:
                continue
            try:
                pids = [
                    watcher.pid,
                    *(c.pid for c in __import__("psutil").Process(watcher.pid).children(True)),
                ]
            except Exception:
                pids = [watcher.pid]
            watcher.gpu_bytes = sum(used.get(p, 0) for p in pids)
            limit = watcher.policy.gpu_memory_limit_mb
            if limit and watcher.gpu_bytes > limit << 20 and watcher.state != "stopping":
                watcher.kill(
                    f"gpu memory: {watcher.gpu_bytes >> 20} MB over gpu_memory_limit_mb = {limit}"
                )

    # -- control ----------------------------------------------------------------

    async def serve_control(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            if len(frames) < 2:
                self.rejected.add("control", "short control message")
                continue
            identity, payload = frames[0], frames[-1]
            try:
                request = request_decoder.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                reply = ControlReply(ok=False, error=f"bad control request: {exc}")
                await sock.send_multipart([identity, b"", encoder.encode(reply)])
                continue
            # Each request runs on its own, in arrival order, and answers when done: a kill
            # switch is never queued behind a reload's graceful restarts.
            self.in_background(self.answer(sock, identity, request), f"control-{request.cmd}")

    async def answer(
        self, sock: zmq.asyncio.Socket, identity: bytes, request: ControlRequest
    ) -> None:
        try:
            reply = await self.command(request)
        except Exception as exc:
            log.exception("control.failed", cmd=request.cmd)
            reply = ControlReply(ok=False, error=f"{request.cmd} failed: {exc}")
        await sock.send_multipart([identity, b"", encoder.encode(reply)])

    async def command(self, request: ControlRequest) -> ControlReply:
        match request.cmd:
            case "ping":
                return ControlReply(ok=True, data={"pid": os.getpid()})
            case "status":
                return ControlReply(ok=True, data=self.status())
            case "restart":
                watcher = self.watchers.get(request.name)
                if watcher is None:
                    known = ", ".join(self.watchers)
                    return ControlReply(
                        ok=False, error=f"no actor named {request.name!r} (running: {known})"
                    )
                # The kill switches it must not undo are those after it arrived: counted now.
                self.in_background(
                    self.restart(watcher, kills=watcher.kills), f"restart-{watcher.name}"
                )
                return ControlReply(ok=True, message=f"restarting {watcher.name}")
            case "refresh":
                # Restarted only if it runs: one the kill switch (or an owner) stopped, or that
                # failed, stays as it is, and takes her settings whenever it next starts.
                watcher = self.watchers.get(request.name)
                if watcher is None and request.name in self.config.actors:
                    return ControlReply(ok=True, message=f"{request.name} is not enabled")
                if watcher is None:
                    return ControlReply(ok=False, error=f"no actor named {request.name!r}")
                self.in_background(self.refresh(watcher), f"refresh-{watcher.name}")
                return ControlReply(ok=True, message=f"refreshing {watcher.name}")
            case "stop":
                asyncio.get_running_loop().call_later(0.05, self.shutting_down.set)
                then = "" if self.config.bus.remote else ", then the broker"
                return ControlReply(ok=True, message=f"stopping every actor{then}")
            case "reload":
                async with self._reloading:  # one reload at a time; nothing else waits for it
                    return await self.reload()
            case "killswitch":
                return await self.killswitch(request.keep, request.name or "kill switch")
            case "capability":
                return await self.capability(request)
            case "log":
                if hexlog.recent is None:
                    return ControlReply(ok=False, error="this supervisor keeps no log lines")
                lines, seq = hexlog.recent.after(request.after)
                return ControlReply(ok=True, data={"lines": lines, "seq": seq})
        return ControlReply(ok=False, error=f"unknown command {request.cmd!r}")

    async def capability(self, request: ControlRequest) -> ControlReply:
        """List the switches, or set one: saved before it is announced, announced on the bus
        (durable, the whole table) so every actor that obeys it applies it at once."""
        caps = self.capabilities
        if not request.capability:
            table = caps.table(request.person)
            return ControlReply(ok=True, data={"capabilities": table, "version": caps.version})
        before, version = caps.to_json(), caps.version
        try:
            line = caps.set(
                request.capability,
                request.enabled,
                by=request.by or "hexbus capability",
                owner=request.owner,
                person_id=request.person,
            )
        except SwitchRefused as exc:
            return ControlReply(ok=False, error=str(exc))
        if caps.version == version:  # nothing to change (already so)
            return ControlReply(ok=True, message=line, data={"version": caps.version})
        try:
            caps.save(self.data_dir)
        except OSError as exc:
            self.capabilities = Capabilities.from_json(before)
            return ControlReply(
                ok=False, error=f"the switch was not saved ({exc}): nothing changed; free space?"
            )
        log.warning(
            "supervisor.capability",
            capability=request.capability,
            enabled=request.enabled,
            person=request.person,
            by=request.by,
            via=request.via,
        )
        event = caps.changed(
            name=request.capability,
            person_id=request.person,
            enabled=request.enabled,
            by=request.by,
            via=request.via or "cli",
        )
        if self.bus is not None:
            await self.bus.publish_durable(event, key=request.capability)
        return ControlReply(ok=True, message=line, data={"version": caps.version})

    def status(self) -> dict[str, Any]:
        rows = {name: {"name": name, **w.status()} for name, w in self.watchers.items()}
        broker = self.watchers.get(BROKER)
        lagging = broker.beat.lagging if broker is not None and broker.beat is not None else {}
        for name, lost_to in lagging.items():
            if name in rows:
                # Retention's hard cap deleted events this actor had not applied (up to here).
                rows[name]["retention_cut_to"] = lost_to
        return rows

    async def killswitch(self, keep: tuple[str, ...], by: str) -> ControlReply:
        """Stop every actor but the broker and ``keep`` (the responder that says so); none restarts
        until `hexbus restart NAME`, `hexbus reload` or `hexbus run` brings it back."""
        unknown = [n for n in keep if n not in self.watchers]
        if unknown:
            return ControlReply(ok=False, error=f"no actor named {', '.join(unknown)} to keep")
        stopping = [w for n, w in self.watchers.items() if n != BROKER and n not in keep]
        log.warning(
            "supervisor.killswitch", by=by, stopping=[w.name for w in stopping], kept=list(keep)
        )
        # At once, before any wait: a restart, reload or backoff in progress sees it and starts
        # nothing (each checks the epoch or `wanted` after its own waits). No lock is taken, so
        # the kill switch never waits behind a long graceful stop or a reload.
        self.kill_epoch += 1
        for watcher in stopping:
            watcher.kills += 1
            watcher.wanted = False
            if watcher.restart_handle is not None:
                watcher.restart_handle.cancel()
                watcher.restart_handle = None

        async def stop(watcher: Watcher) -> None:
            await watcher.stop()
            if watcher.exit_task is not None:
                await asyncio.gather(watcher.exit_task, return_exceptions=True)
            if not watcher.wanted:  # not brought back by a restart asked for since
                watcher.state = "stopped"
                watcher.reason = f"kill switch ({by})"

        await asyncio.gather(*(stop(w) for w in stopping))
        names = [w.name for w in stopping]
        return ControlReply(
            ok=True,
            message=f"kill switch: stopped {', '.join(names) or 'nothing'}",
            data={"stopped": names, "kept": [*(n for n in (BROKER,) if n in self.watchers), *keep]},
        )

    async def restart(
        self, watcher: Watcher, new: Watcher | None = None, kills: int | None = None
    ) -> None:
        """Hot restart: a graceful stop (the actor snapshots its state), then a fresh process.

        A second request while one is in progress waits for it, then restarts the new process.
        A kill switch that stopped this actor after the request (``kills`` counted then) wins:
        the actor stays stopped.
        """
        kills = watcher.kills if kills is None else kills
        async with watcher.control_lock:
            await self._restart(watcher, new, kills)

    async def refresh(self, watcher: Watcher) -> None:
        """Restart ``watcher`` if it is running and wanted (to start on new settings); else
        leave it: a stopped one is not revived, a crashed one reads them at its respawn."""
        async with watcher.control_lock:
            if watcher.wanted and watcher.running:
                await self._restart(watcher, None, watcher.kills)

    async def halt(self, watcher: Watcher) -> None:
        """Stop an actor on request: no automatic restart (pending or after this exit), a graceful
        stop, and its exit handled before this returns."""
        watcher.wanted = False
        if watcher.restart_handle is not None:
            watcher.restart_handle.cancel()
            watcher.restart_handle = None
        await watcher.stop()
        if watcher.exit_task is not None:
            await asyncio.gather(watcher.exit_task, return_exceptions=True)

    async def _restart(self, watcher: Watcher, new: Watcher | None, kills: int) -> None:
        await self.halt(watcher)
        target = new or watcher
        if new is not None:
            new.restarts = watcher.restarts
            new.kills = watcher.kills
            self.watchers[watcher.name] = new
        if watcher.kills != kills:
            self._kept_down(target)
            return
        target.restarts += 1
        target.budget.reset()
        target.wanted = True
        target.reason = "restarted on request"
        self.emit(target, "restart", restarts=target.restarts, reason="requested")
        await self.spawn(target)

    def _kept_down(self, watcher: Watcher) -> None:
        """A start that a kill switch overtook: the actor stays stopped."""
        watcher.wanted = False
        watcher.state = "stopped"
        watcher.reason = "kill switch"

    async def reload(self) -> ControlReply:
        epoch = self.kill_epoch
        try:
            fresh = load(self.config_path)
        except ConfigError as exc:
            return ControlReply(ok=False, error=f"{exc} (nothing changed)")
        notes: list[str] = []
        if fresh.bus != self.config.bus or fresh.supervisor != self.config.supervisor:
            notes.append(
                "bus/supervisor sections changed: they apply after `hexbus stop` and `hexbus run`"
            )
        old_specs = {n: s for n, s in self.config.actors.items() if s.enabled}
        new_specs = {n: s for n, s in fresh.actors.items() if s.enabled}
        self.config = msgspec.structs.replace(
            fresh, bus=self.config.bus, supervisor=self.config.supervisor
        )
        removed = [n for n in old_specs if n not in new_specs]
        added = [n for n in start_order(fresh) if n not in old_specs]
        changed = [n for n in new_specs if n in old_specs and new_specs[n] != old_specs[n]]
        for name in reversed(removed):
            watcher = self.watchers.pop(name, None)
            if watcher is not None:
                watcher.wanted = False
                if watcher.restart_handle is not None:
                    watcher.restart_handle.cancel()
                await watcher.stop()
                self.emit(watcher, "exit", reason="removed by reload")
        kills = {name: self.watchers[name].kills for name in changed}
        for name in changed:
            await self.restart(
                self.watchers[name], self.actor_watcher(name, new_specs[name]), kills[name]
            )
        for name in added:
            watcher = self.actor_watcher(name, new_specs[name])
            self.watchers[name] = watcher
            if self.kill_epoch != epoch:
                self._kept_down(watcher)
                continue
            async with watcher.control_lock:
                await self.spawn(watcher)
        self.order = [*(n for n in self.order if n == BROKER), *start_order(fresh)]
        message = (
            f"added {added or 'none'}, removed {removed or 'none'}, restarted {changed or 'none'}"
        )
        return ControlReply(
            ok=True,
            message="; ".join([message, *notes]),
            data={"added": added, "removed": removed, "restarted": changed},
        )

    # -- the whole life ---------------------------------------------------------

    async def run(self) -> int:
        ctx = zmq.asyncio.Context.instance()
        hb = ctx.socket(zmq.PULL)
        hb.linger = 0
        hb.rcvhwm = 10_000
        control = ctx.socket(zmq.ROUTER)
        control.linger = 0
        for sock, address in ((hb, self.endpoints.heartbeat), (control, self.endpoints.control)):
            path = address.removeprefix("ipc://")
            if os.path.exists(path):
                os.unlink(path)
            sock.bind(address)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        self._tasks = [
            loop.create_task(self.read_heartbeats(hb)),
            loop.create_task(self.serve_control(control)),
            loop.create_task(self.monitor()),
        ]
        log.info(
            "supervisor.starting",
            config=str(self.config_path),
            run_dir=str(self.run_dir),
            data_dir=str(self.data_dir),
            actors=[n for n, s in self.config.actors.items() if s.enabled],
        )
        if not self.config.bus.remote:  # else the broker's own host runs it
            broker = self.broker_watcher()
            self.watchers[BROKER] = broker
            async with broker.control_lock:
                await self.spawn(broker)
        self.bus = BusClient(self.endpoints, "supervisor", outbox=100_000)
        self.bus.start()
        self._tasks.append(loop.create_task(self.publish_lifecycle()))
        if not self.config.bus.remote:
            await self._wait_live([broker], broker.policy.heartbeat_timeout_s)
        self.order = list(self.watchers)
        names = start_order(self.config)
        for name in names:
            self.watchers[name] = self.actor_watcher(name, self.config.actors[name])
        self.setup_gpu()
        for name in names:
            if self.shutting_down.is_set():
                break
            watcher = self.watchers.get(name)
            if watcher is None:
                continue  # a reload removed it before it started
            deps = [self.watchers[d] for d in watcher.depends_on if d in self.watchers]
            await self._wait_live(
                deps, max((d.policy.heartbeat_timeout_s for d in deps), default=0)
            )
            async with watcher.control_lock:  # a restart asked for meanwhile waits for it
                await self.spawn(watcher)
            self.order.append(name)
        log.info("supervisor.ready", run_dir=str(self.run_dir))
        await self.shutting_down.wait()
        await self.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        hb.close(linger=0)
        control.close(linger=0)
        os.close(self._lock_fd)
        log.info("supervisor.stopped")
        return 0

    async def _wait_live(self, watchers: Iterable[Watcher], timeout: float) -> None:
        pending = [w for w in watchers if not w.live_at]
        if not pending:
            return
        waits = [asyncio.ensure_future(w.live_event.wait()) for w in pending]
        stop = asyncio.ensure_future(self.shutting_down.wait())
        everyone: asyncio.Future[Any] = asyncio.gather(*waits)
        await asyncio.wait([everyone, stop], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        everyone.cancel()
        stop.cancel()
        for w in waits:
            w.cancel()
        late = [w.name for w in pending if not w.live_at]
        if late and not self.shutting_down.is_set():
            log.warning("supervisor.dependency_not_live", waiting_for=late, after_s=timeout)

    def _on_signal(self) -> None:
        if self.shutting_down.is_set():
            log.warning("supervisor.forced_stop")
            for watcher in self.watchers.values():
                watcher.kill("forced stop (second signal)")
            return
        log.info(
            "supervisor.signal", hint="stopping gracefully; send the signal again to kill at once"
        )
        self.shutting_down.set()

    async def shutdown(self) -> None:
        """Stop actors in reverse start order (all signalled together), then flush lifecycle, then the broker."""
        self.shutting_down.set()
        for watcher in self.watchers.values():
            if watcher.restart_handle is not None:
                watcher.restart_handle.cancel()
        actors = [
            self.watchers[n] for n in reversed(self.order) if n != BROKER and n in self.watchers
        ]
        actors += [w for n, w in self.watchers.items() if n != BROKER and w not in actors]
        for watcher in actors:
            watcher.wanted = False
        await asyncio.gather(*(w.stop() for w in actors))
        await asyncio.sleep(0)  # let exit events reach the queue
        if self.bus is not None:
            deadline = time.monotonic() + 2.0
            while not self.lifecycle.empty() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await self.bus.close(flush_timeout=2.0)
        broker = self.watchers.get(BROKER)
        if broker is not None:
            broker.wanted = False
            await broker.stop()
        for watcher in self.watchers.values():
            if watcher.exit_task is not None:
                await asyncio.gather(watcher.exit_task, return_exceptions=True)
