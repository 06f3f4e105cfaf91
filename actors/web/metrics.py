"""``/metrics`` for Prometheus: one process (the web actor) gathers what every actor says on the
bus and what the supervisor knows, and serves it in the text exposition format.

Not prometheus_client's multiprocess mode (files per process): the actors already say everything
on the bus. From each actor's heartbeat (``sys.heartbeat``): events in and out, dropped,
rejected, resident memory, CPU time, the age of its oldest work, the journal offset it applied. From the
supervisor's status (asked every few seconds): state, restarts, uptime, pid. From the broker's
heartbeat: the journal's head, so each durable subscriber's lag is head minus applied. From
``metrics`` events: latency stages (``voice.*``, ``stt.*``, ``brain.first_chunk``, ...) as
histograms, by stage name only (a reply's id is never a label: one series per reply would grow
without end).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from schemas import BrokerHeartbeat, Heartbeat, Metric

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
        self.stages: dict[str, Histogram] = {}
        self.stages_refused = 0
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

    def supervisor(self, status: dict[str, dict[str, Any]]) -> None:
        self.status = status

    def metric(self, event: Metric) -> None:
        if event.unit != "ms" or not _NAME.fullmatch(event.name):
            return
        if event.name not in self.stages and len(self.stages) >= STAGES_KEPT:
            self.stages_refused += 1
            return
        self.stages.setdefault(event.name, self.latency)
        self.latency.labels(stage=event.name).observe(event.value)

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
        yield from (events_in, events_out, dropped, rejected, rss, cpu, work, lag, restarts, up)
        yield from (uptime, gpu)
        head = GaugeMetricFamily("hex_journal_head_offset", "The journal's last offset")
        head.add_metric([], self.head_offset)
        yield head
        refused = CounterMetricFamily(
            "hex_stage_names_refused", f"Metric events past {STAGES_KEPT} stage names"
        )
        refused.add_metric([], self.stages_refused)
        yield refused


_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")
