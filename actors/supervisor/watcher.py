"""One supervised process: how it is started, watched, and brought back."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil

from schemas import Heartbeat

WatcherState = Literal[
    "stopped", "starting", "replaying", "live", "backoff", "failed", "stopping", "exited"
]


@dataclass(slots=True)
class Policy:
    """Restart settings common to actors and the broker."""

    restart: Literal["permanent", "transient", "temporary"]
    max_restarts: int
    restart_period_s: float
    backoff_initial_s: float
    backoff_max_s: float
    heartbeat_timeout_s: float
    stop_grace_s: float
    memory_limit_mb: int
    gpu_memory_limit_mb: int = 0
    work_timeout_s: float = 0.0


@dataclass(slots=True)
class RestartBudget:
    """Restart intensity and backoff, as in Erlang/OTP: at most ``max_restarts`` in any
    ``period_s`` window; backoff doubles per restart since the process was last live."""

    max_restarts: int
    period_s: float
    backoff_initial_s: float
    backoff_max_s: float
    recent: deque[float] = field(default_factory=deque)
    since_live: int = 0

    def on_exit(self, now: float) -> float | None:
        """The backoff before restarting, or None when the intensity is exceeded."""
        while self.recent and now - self.recent[0] > self.period_s:
            self.recent.popleft()
        if len(self.recent) >= self.max_restarts:
            return None
        self.recent.append(now)
        backoff = min(self.backoff_max_s, self.backoff_initial_s * (1 << min(self.since_live, 62)))
        self.since_live += 1
        return backoff

    def on_live(self) -> None:
        self.since_live = 0

    def reset(self) -> None:
        self.recent.clear()
        self.since_live = 0


@dataclass(slots=True)
class Watcher:
    """A named process, its restart history and its last heartbeat."""

    name: str
    argv: list[str]
    env: dict[str, str]
    policy: Policy
    depends_on: list[str] = field(default_factory=list)
    # What its environment gets afresh at each start (an actor's spec with her settings laid
    # over its config, as they are then); None: the environment it was made with.
    fresh_env: Callable[[], dict[str, str]] | None = None
    proc: asyncio.subprocess.Process | None = None
    state: WatcherState = "stopped"
    restarts: int = 0
    budget: RestartBudget = field(init=False)
    started_at: float = 0.0
    live_at: float = 0.0
    last_beat_at: float = 0.0
    beat: Heartbeat | None = None
    rss_bytes: int = 0
    gpu_bytes: int = 0
    reason: str = ""
    wanted: bool = True  # false while a requested stop or restart is in progress
    exit_task: asyncio.Task[None] | None = None
    restart_handle: asyncio.TimerHandle | None = None
    kill_reason: str = ""
    live_event: asyncio.Event = field(default_factory=asyncio.Event)
    # Held through a requested restart or kill-switch stop, so two requests never overlap: two
    # restarts at once would each spawn a process (found by a clean-clone test run).
    control_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    kills: int = 0  # kill switches that stopped it: a restart asked for before one is void

    def __post_init__(self) -> None:
        p = self.policy
        self.budget = RestartBudget(
            p.max_restarts, p.restart_period_s, p.backoff_initial_s, p.backoff_max_s
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def spawn(self) -> int:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: signals reach its children too
        )
        now = time.monotonic()
        self.started_at = now
        self.last_beat_at = now
        self.beat = None
        self.live_at = 0.0
        self.rss_bytes = 0
        self.kill_reason = ""
        self.state = "starting"
        self.live_event.clear()
        return self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.proc.send_signal(signum)

    def kill(self, reason: str) -> None:
        self.kill_reason = reason
        self.signal(signal.SIGKILL)

    async def stop(self, grace: float | None = None) -> None:
        """SIGTERM, wait up to the grace period, then SIGKILL the whole process group."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.state = "stopping"
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(
                asyncio.shield(self.proc.wait()), grace or self.policy.stop_grace_s
            )
        except TimeoutError:
            self.kill("did not stop within its grace period")
            await self.proc.wait()
        self._reap_group()

    def _reap_group(self) -> None:
        # Children an actor left behind (worker processes) share its group; make sure they go too.
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def work_s(self, now: float) -> float:
        """Age of the actor's oldest unfinished work now, from its last heartbeat (0: none)."""
        beat = self.beat
        if beat is None or not beat.oldest_work_s:
            return 0.0
        return beat.oldest_work_s + (now - self.last_beat_at)

    def stuck_for(self, now: float) -> float | None:
        """The oldest work's age when it is past ``work_timeout_s`` (a live actor only)."""
        limit = self.policy.work_timeout_s
        if not limit or self.state != "live":
            return None
        age = self.work_s(now)
        return age if age > limit else None

    def on_beat(self, beat: Heartbeat) -> bool:
        """Record a heartbeat; True when it made the process live for the first time."""
        self.last_beat_at = time.monotonic()
        self.beat = beat
        if beat.state in ("replaying", "live") and self.state in ("starting", "replaying"):
            self.state = beat.state
        if beat.state == "live" and not self.live_at:
            self.live_at = self.last_beat_at
            self.budget.on_live()
            self.live_event.set()
            return True
        return False

    def measure(self) -> None:
        if not self.running:
            self.rss_bytes = 0
            return
        try:
            proc = psutil.Process(self.pid)
            rss = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    pass
            self.rss_bytes = rss
        except psutil.Error:
            self.rss_bytes = 0

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        beat = self.beat
        return {
            "pid": self.pid,
            "state": self.state,
            "uptime_s": round(now - self.started_at, 1) if self.running else 0.0,
            "restarts": self.restarts,
            "rss_bytes": self.rss_bytes,
            "gpu_bytes": self.gpu_bytes,
            "last_heartbeat_s": round(now - self.last_beat_at, 2)
            if self.running and beat
            else None,
            "events_in": beat.events_in if beat else 0,
            "events_out": beat.events_out if beat else 0,
            "dropped": beat.dropped if beat else 0,
            "detail": beat.detail if beat and self.running else "",
            "work_s": round(self.work_s(now), 1) if self.running else 0.0,
            "rejected": beat.rejected if beat else 0,
            "applied_offset": beat.applied_offset if beat else 0,
            "reason": self.reason,
        }


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
