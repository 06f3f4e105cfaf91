"""``/metrics`` for Prometheus: one process (the web actor) gathers what every actor says on the
bus and what the supervisor knows, and serves it in the text exposition format.

Not prometheus_client's multiprocess mode (files per process): the actors already say everything
on the bus. From each actor's heartbeat (``sys.heartbeat``): events in and out, dropped,
rejected, resident memory, CPU time, the age of its oldest work, the journal offset it applied. From the
supervisor's status (asked every few seconds): state, restarts, uptime, pid. From the broker's
heartbeat: the journal's head, so each durable subscriber's lag is head minus applied. From
``metrics`` events: latency stages (``voice.*``, ``stt.*``, ``brain.first_chunk``, ...) as
histograms, by stage name only (a reply's id is never a label: one series per reply would grow
without end). Each actor's handler durations come as bucket counts in its heartbeat and are
served as a histogram. From the brain (asked by the usage panel every few seconds): tokens per
backend and each backend's state (awake, sleepy, asleep, down) with its reset time. From the
machine (while a tab shows the usage panel): CPU, RAM and each GPU's memory.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from schemas import (
    HANDLER_BUCKETS_MS,
    BackendState,
    BrokerHeartbeat,
    DeadLetter,
    Heartbeat,
    Metric,
)

__all__ = ["CONTENT_TYPE", "Gatherer"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STALE_S = 30.0  # an actor not heard from this long is left out (it is gone, or renamed)
STAGES_KEPT = 64  # distinct stage names turned into histograms; more are counted, not kept
# Milliseconds: from a few (a bus hop) to tens of seconds (a long reply on a CPU).
BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


class Gatherer(Collector):
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.beats: dict[str, tuple[float, Heartbeat]] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.head_offset = 0
        self.journal = (0, 0)  # the first offset retained, the segments' bytes
        self.stages: set[str] = set()
        self.stages_refused = 0
        self.backend_states: tuple[BackendState, ...] = ()
        self.letters: dict[str, str] = {}  # "actor/event_id" -> its latest status
        self.host: dict[str, Any] = {}
        self.latency = Histogram(
            "hex_stage_latency_ms",
            "Latency of a named stage (voice end of speech to first audio, brain first chunk...)",
            ["stage"],
            buckets=BUCKETS_MS,
            registry=self.registry,
        )
        self.registry.register(self)

    # -- what the actor hands over -----------------------------------------------------

    def heartbeat(self, beat: Heartbeat) -> None:
        self.beats[beat.actor] = (time.monotonic(), beat)

    def broker(self, beat: BrokerHeartbeat) -> None:
        self.head_offset = beat.head_offset
        self.journal = (beat.first_offset, beat.journal_bytes)

    def supervisor(self, status: dict[str, dict[str, Any]]) -> None:
        self.status = status

    def metric(self, event: Metric) -> None:
        if event.unit != "ms" or not _NAME.fullmatch(event.name):
            return
        if event.name not in self.stages and len(self.stages) >= STAGES_KEPT:
            self.stages_refused += 1
            return
        self.stages.add(event.name)
        self.latency.labels(stage=event.name).observe(event.value)

    def dead_letter(self, letter: DeadLetter) -> None:
        """A dead letter, or a later status of one (retried, dropped): the open ones are counted."""
        self.letters[f"{letter.actor}/{letter.event_id}"] = letter.status

    def dead_letters(self) -> dict[str, int]:
        """Each actor's dead letters still open."""
        counts: dict[str, int] = {}
        for key, status in self.letters.items():
            if status == "dead":
                actor = key.split("/", 1)[0]
                counts[actor] = counts.get(actor, 0) + 1
        return counts

    def backends(self, states: tuple[BackendState, ...]) -> None:
        self.backend_states = states

    def machine(self, sample: dict[str, Any]) -> None:
        self.host = sample

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- the collector -----------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        now = time.monotonic()
        beats = {n: b for n, (at, b) in self.beats.items() if now - at < STALE_S}
        names = sorted(set(beats) | set(self.status))

        def family(kind: type, name: str, doc: str) -> Any:
            return kind(name, doc, labels=["actor"])

        events_in = family(CounterMetricFamily, "hex_actor_events_in", "Events handled")
        events_out = family(CounterMetricFamily, "hex_actor_events_out", "Events published")
        dropped = family(CounterMetricFamily, "hex_actor_dropped", "Volatile events dropped")
        rejected = family(CounterMetricFamily, "hex_actor_rejected", "Events refused")
        rss = family(GaugeMetricFamily, "hex_actor_rss_bytes", "Resident memory")
        cpu = family(CounterMetricFamily, "hex_actor_cpu_seconds", "CPU time used (user + system)")
        work = family(GaugeMetricFamily, "hex_actor_oldest_work_seconds", "Oldest unfinished work")
        lag = family(GaugeMetricFamily, "hex_actor_journal_lag", "Journal head minus applied")
        restarts = family(CounterMetricFamily, "hex_actor_restarts", "Restarts by the supervisor")
        up = family(GaugeMetricFamily, "hex_actor_up", "1 when the actor is live")
        uptime = family(GaugeMetricFamily, "hex_actor_uptime_seconds", "Since its last start")
        gpu = family(GaugeMetricFamily, "hex_actor_gpu_bytes", "GPU memory (0 without NVML)")
        dead = family(GaugeMetricFamily, "hex_actor_dead_letters", "Dead letters still open")
        letters = self.dead_letters()
        for name in names:
            beat = beats.get(name)
            status = self.status.get(name, {})
            if beat is not None:
                events_in.add_metric([name], beat.events_in)
                events_out.add_metric([name], beat.events_out)
                dropped.add_metric([name], beat.dropped)
                rejected.add_metric([name], beat.rejected)
                rss.add_metric([name], beat.rss_bytes)
                cpu.add_metric([name], beat.cpu_seconds)
                work.add_metric([name], beat.oldest_work_s)
                if beat.applied_offset and self.head_offset and name != "broker":
                    lag.add_metric([name], max(0, self.head_offset - beat.applied_offset))
            if status:
                restarts.add_metric([name], int(status.get("restarts", 0)))
                up.add_metric([name], 1.0 if status.get("state") == "live" else 0.0)
                uptime.add_metric([name], float(status.get("uptime_s", 0.0)))
                gpu.add_metric([name], int(status.get("gpu_bytes", 0)))
            dead.add_metric([name], letters.get(name, 0))
        yield from (events_in, events_out, dropped, rejected, rss, cpu, work, lag, restarts, up)
        yield from (uptime, gpu, dead)
        yield self._handlers(names, beats)
        yield from self._backends()
        yield from self._host()
        head = GaugeMetricFamily("hex_journal_head_offset", "The journal's last offset")
        head.add_metric([], self.head_offset)
        first = GaugeMetricFamily("hex_journal_first_offset", "The journal's first offset kept")
        first.add_metric([], self.journal[0])
        size = GaugeMetricFamily("hex_journal_bytes", "The journal segments' size on disk")
        size.add_metric([], self.journal[1])
        yield from (head, first, size)
        refused = CounterMetricFamily(
            "hex_stage_names_refused", f"Metric events past {STAGES_KEPT} stage names"
        )
        refused.add_metric([], self.stages_refused)
        yield refused

    def _handlers(self, names: list[str], beats: dict[str, Heartbeat]) -> Any:
        handlers = HistogramMetricFamily(
            "hex_actor_handler_latency_ms", "How long the actor's handlers took", labels=["actor"]
        )
        bounds = [*(floatToGoString(b) for b in HANDLER_BUCKETS_MS), "+Inf"]  # type: ignore[no-untyped-call]
        for name in names:
            beat = beats.get(name)
            if beat is None or len(beat.handler_counts) != len(bounds):
                continue
            running, buckets = 0, []
            for bound, count in zip(bounds, beat.handler_counts, strict=True):
                running += count
                buckets.append((bound, running))
            handlers.add_metric([name], buckets, beat.handler_ms_sum)
        return handlers

    def _backends(self) -> Iterator[Any]:
        tokens = CounterMetricFamily(
            "hex_backend_tokens", "Tokens a backend used", labels=["backend", "kind"]
        )
        requests = CounterMetricFamily(
            "hex_backend_requests", "Requests to a backend", labels=["backend", "outcome"]
        )
        state = GaugeMetricFamily(
            "hex_backend_state", "1 for the backend's state", labels=["backend", "state"]
        )
        reset = GaugeMetricFamily(
            "hex_backend_reset_timestamp_seconds",
            "When an asleep or down backend is tried again (0: it is not)",
            labels=["backend"],
        )
        for b in self.backend_states:
            tokens.add_metric([b.name, "prompt"], b.prompt_tokens)
            tokens.add_metric([b.name, "completion"], b.completion_tokens)
            requests.add_metric([b.name, "ok"], b.requests - b.failures)
            requests.add_metric([b.name, "failed"], b.failures)
            for name in ("awake", "sleepy", "asleep", "down", "idle"):
                state.add_metric([b.name, name], 1.0 if b.state == name else 0.0)
            reset.add_metric([b.name], b.until)
        yield from (tokens, requests, state, reset)

    def _host(self) -> Iterator[Any]:
        if not self.host:
            return
        cpu = GaugeMetricFamily("hex_host_cpu_percent", "The machine's CPU use")
        cpu.add_metric([], self.host["cpu_percent"])
        ram = GaugeMetricFamily("hex_host_memory_bytes", "The machine's RAM", labels=["kind"])
        ram.add_metric(["used"], self.host["ram_used"])
        ram.add_metric(["total"], self.host["ram_total"])
        gpu = GaugeMetricFamily(
            "hex_gpu_memory_bytes", "A GPU's memory (NVML)", labels=["gpu", "kind"]
        )
        for device in self.host["gpus"]:
            gpu.add_metric([str(device["index"]), "used"], device["used"])
            gpu.add_metric([str(device["index"]), "total"], device["total"])
        yield from (cpu, ram, gpu)


_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")
