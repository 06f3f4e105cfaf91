"""The page's usage and latency panel: tokens per backend, person and day, each backend's state
(awake, sleepy, asleep with its reset time), per-turn latency waterfalls, and the machine (CPU,
RAM, each actor's memory and GPU memory, the GPUs where NVML answers, "no GPU" otherwise).

A tab sends ``{"t": "usage"}`` to get ``{"t": "usage", ...}`` now and every couple of seconds
while it shows the panel (``{"t": "usage", "off": true}`` when it hides it). The brain's part comes from ``brain.usage`` (its ledger and fallback
chain); the waterfalls from the ``metrics`` events the voice and brain publish per turn; the
machine from psutil and NVML, read off the loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import psutil
import structlog

from actors.web.hub import Hub
from actors.web.metrics import Gatherer
from hexbus import RequestTimeout
from schemas import BrainUsage, BrainUsageReport, Metric

__all__ = ["Machine", "UsagePanel"]

log = structlog.get_logger("actors.web.usage")

TURNS_KEPT = 50  # waterfalls kept for the panel
# The voice's stages, in order, as voice.first_audio names them (each the ms since the one
# before): end of speech -> transcript -> first token -> first sentence -> first audio.
VOICE_STAGES = ("transcribed", "first_token", "first_sentence", "first_audio")
ASK_TIMEOUT_S = 2.0


class Machine:
    """CPU, RAM and the GPUs: psutil always, NVML where it answers (``gpu_error`` says why not)."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.gpu_error = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, a driver error
            self.gpu_error = f"no GPU: NVML unavailable ({type(exc).__name__}: {exc})"[:200]
        psutil.cpu_percent(None)  # the first call only starts the measurement

    def sample(self) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        sample: dict[str, Any] = {
            "at": time.time(),
            "cpu_percent": psutil.cpu_percent(None),
            "cpus": psutil.cpu_count() or 1,
            "ram_used": memory.total - memory.available,
            "ram_total": memory.total,
            "gpus": [],
            "gpu_error": self.gpu_error,
        }
        if self.nvml is None:
            return sample
        nvml = self.nvml
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                info = nvml.nvmlDeviceGetMemoryInfo(handle)
                name = nvml.nvmlDeviceGetName(handle)
                sample["gpus"].append(
                    {
                        "index": i,
                        "name": name.decode() if isinstance(name, bytes) else str(name),
                        "used": int(info.used),
                        "total": int(info.total),
                        "util": int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    }
                )
        except Exception as exc:
            sample["gpu_error"] = f"NVML failed: {exc}"[:200]
        return sample


class UsagePanel:
    def __init__(
        self,
        hub: Hub,
        gatherer: Gatherer,
        *,
        request: Callable[..., Awaitable[Any]],
        offload: Callable[..., Awaitable[Any]],
        machine: Machine,
        rows: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.hub, self.gatherer, self.request, self.offload = hub, gatherer, request, offload
        self.machine = machine
        self.rows = rows  # the runtime panel's table of actors
        self.turns: deque[dict[str, Any]] = deque(maxlen=TURNS_KEPT)
        self.brain: dict[str, Any] = {"lines": [], "backends": [], "error": "not asked yet"}
        self.asked_at = 0.0

    def watching(self) -> list[Any]:
        return [c for c in list(self.hub.clients) if "usage" in c.panels]

    async def command(self, client: Any, message: dict[str, Any]) -> None:
        if message.get("off"):
            client.panels.discard("usage")
            return
        client.panels.add("usage")
        await self.tick(force=True)

    def metric(self, event: Metric) -> None:
        """A turn's latency, as the page draws it: the voice's stages, or a typed reply's first
        chunk."""
        labels = event.labels
        if event.name == "voice.first_audio":
            stages = []
            for stage in VOICE_STAGES:
                try:
                    stages.append([stage, float(labels[stage])])
                except (KeyError, ValueError):
                    continue
            self.turns.append(
                {
                    "kind": "voice",
                    "id": labels.get("reply_to", ""),
                    "at": time.time(),
                    "total_ms": event.value,
                    "from": labels.get("from", ""),
                    "stages": stages,
                }
            )
        elif event.name == "brain.first_chunk":
            self.turns.append(
                {
                    "kind": "text",
                    "id": labels.get("reply_to", ""),
                    "at": time.time(),
                    "total_ms": event.value,
                    "stages": [["first_chunk", event.value]],
                }
            )

    async def ask_brain(self) -> None:
        """The brain's tokens and backends, for the panel and /metrics."""
        self.asked_at = time.monotonic()
        try:
            report: BrainUsageReport = await self.request(
                BrainUsage(days=30), BrainUsageReport, timeout=ASK_TIMEOUT_S
            )
        except RequestTimeout:
            self.brain["error"] = "the brain did not answer (is it running?)"
            return
        self.brain = {**msgspec.to_builtins(report), "error": ""}
        self.gatherer.backends(report.backends)

    async def tick(self, *, force: bool = False, every_s: float = 10.0) -> None:
        """Ask the brain (every ``every_s`` for /metrics; each time while a tab shows the panel)
        and send the panel to the tabs showing it."""
        tabs = self.watching()
        if tabs or force or time.monotonic() - self.asked_at >= every_s:
            await self.ask_brain()
        if not tabs:
            return
        machine = await self.offload(self.machine.sample)
        self.gatherer.machine(machine)
        keep = ("actor", "state", "rss_bytes", "cpu_s", "gpu_bytes")
        actors = [{k: row[k] for k in keep} for row in self.rows()]
        panel = {
            "t": "usage",
            "brain": self.brain,
            "turns": list(self.turns),
            "machine": machine,
            "actors": actors,
        }
        for client in tabs:
            self.hub.send(client, panel)
