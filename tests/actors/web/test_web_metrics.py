"""/metrics' gathering in-process: what actors' heartbeats, the broker and the supervisor say
becomes Prometheus series; latency stages become histograms by stage, never by reply."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.web import metrics
from actors.web.metrics import Gatherer
from schemas import BackendState, BrokerHeartbeat, Heartbeat, Metric
from tests.support.harness import REPO


def samples(gatherer: Gatherer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = gatherer.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_heartbeats_status_and_the_journal_head_become_series() -> None:
    g = Gatherer()
    g.heartbeat(
        Heartbeat(
            actor="brain",
            pid=7,
            events_in=12,
            events_out=30,
            rss_bytes=1 << 20,
            applied_offset=90,
            dropped=2,
            oldest_work_s=1.5,
            cpu_seconds=3.25,
        )
    )
    g.broker(BrokerHeartbeat(incarnation="x", head_offset=100, first_offset=1, journal_bytes=4096))
    g.supervisor(
        {
            "brain": {"state": "live", "restarts": 3, "uptime_s": 42.0, "gpu_bytes": 0},
            "discord": {"state": "failed", "restarts": 0, "uptime_s": 0.0},
        }
    )
    got = samples(g)
    brain = (("actor", "brain"),)
    assert got[("hex_actor_events_in_total", brain)] == 12
    assert got[("hex_actor_events_out_total", brain)] == 30
    assert got[("hex_actor_dropped_total", brain)] == 2
    assert got[("hex_actor_rss_bytes", brain)] == 1 << 20
    assert got[("hex_actor_cpu_seconds_total", brain)] == 3.25
    assert got[("hex_actor_oldest_work_seconds", brain)] == 1.5
    assert got[("hex_actor_journal_lag", brain)] == 10
    assert got[("hex_journal_bytes", ())] == 4096 and got[("hex_journal_first_offset", ())] == 1
    assert got[("hex_actor_restarts_total", brain)] == 3
    assert got[("hex_actor_up", brain)] == 1
    assert got[("hex_actor_up", (("actor", "discord"),))] == 0  # failed: in the table, not up
    assert got[("hex_journal_head_offset", ())] == 100


def test_stages_are_histograms_by_name_and_unbounded_names_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = Gatherer()
    for i, ms in enumerate((12.0, 40.0, 900.0)):
        g.metric(
            Metric(name="voice.first_audio", value=ms, unit="ms", labels={"reply_to": f"r{i}"})
        )
    g.metric(Metric(name="tts.rtf", value=0.4))  # not a latency: left out
    got = samples(g)
    stage = ("stage", "voice.first_audio")
    assert got[("hex_stage_latency_ms_count", (stage,))] == 3
    assert got[("hex_stage_latency_ms_bucket", (("le", "50.0"), stage))] == 2
    assert not any("reply_to" in dict(labels) for _, labels in got)
    monkeypatch.setattr(metrics, "STAGES_KEPT", 2)
    for i in range(5):
        g.metric(Metric(name=f"odd.stage{i}", value=1.0, unit="ms"))
    got = samples(g)
    assert got[("hex_stage_names_refused_total", ())] == 4


def test_an_actor_not_heard_from_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    g = Gatherer()
    g.heartbeat(Heartbeat(actor="old", pid=1, events_in=1))
    monkeypatch.setattr(metrics, "STALE_S", 0.0)
    assert not any(dict(labels).get("actor") == "old" for _, labels in samples(g))


def test_the_grafana_dashboard_asks_only_for_series_the_page_serves() -> None:
    dashboard = json.loads((REPO / "grafana" / "hex.json").read_text())
    g = Gatherer()
    g.heartbeat(Heartbeat(actor="a", pid=1, applied_offset=1))
    g.broker(BrokerHeartbeat(incarnation="x", head_offset=2, first_offset=1))
    g.supervisor({"a": {"state": "live"}})
    g.metric(Metric(name="voice.first_audio", value=1.0, unit="ms"))
    g.heartbeat(Heartbeat(actor="b", pid=2, handler_counts=(1,) * 10, handler_ms_sum=1.0))
    g.backends((BackendState(name="local"),))
    g.machine(
        {
            "cpu_percent": 1.0,
            "ram_used": 1,
            "ram_total": 2,
            "gpus": [{"index": 0, "used": 1, "total": 2}],
        }
    )
    served = {name for name, _ in samples(g)}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {name for expr in exprs for name in re.findall(r"\bhex_[a-z_]+", expr)}
    assert asked and asked <= served, asked - served


def test_handler_durations_backends_and_the_machine_become_series() -> None:
    from schemas import HANDLER_BUCKETS_MS, BackendState

    g = Gatherer()
    counts = (3, 1, 0, 0, 0, 0, 0, 0, 0, 1)  # one handler over the last bound
    assert len(counts) == len(HANDLER_BUCKETS_MS) + 1
    g.heartbeat(Heartbeat(actor="memory", pid=9, handler_counts=counts, handler_ms_sum=40123.5))
    g.backends(
        (
            BackendState(
                name="cloud",
                state="asleep",
                until=1_800_000_000.0,
                requests=5,
                failures=2,
                prompt_tokens=900,
                completion_tokens=100,
            ),
            BackendState(name="local", state="awake", requests=7, prompt_tokens=70),
        )
    )
    g.machine(
        {
            "cpu_percent": 37.5,
            "ram_used": 3 << 30,
            "ram_total": 8 << 30,
            "gpus": [{"index": 0, "used": 1 << 30, "total": 24 << 30}],
        }
    )
    got = samples(g)
    memory = ("actor", "memory")
    assert got[("hex_actor_handler_latency_ms_bucket", (memory, ("le", "1.0")))] == 3
    assert got[("hex_actor_handler_latency_ms_bucket", (memory, ("le", "5.0")))] == 4
    assert got[("hex_actor_handler_latency_ms_bucket", (memory, ("le", "30000.0")))] == 4
    assert got[("hex_actor_handler_latency_ms_bucket", (memory, ("le", "+Inf")))] == 5
    assert got[("hex_actor_handler_latency_ms_count", (memory,))] == 5
    assert got[("hex_actor_handler_latency_ms_sum", (memory,))] == 40123.5
    cloud = ("backend", "cloud")
    assert got[("hex_backend_tokens_total", (cloud, ("kind", "prompt")))] == 900
    assert got[("hex_backend_requests_total", (cloud, ("outcome", "failed")))] == 2
    assert got[("hex_backend_state", (cloud, ("state", "asleep")))] == 1
    assert got[("hex_backend_state", (cloud, ("state", "awake")))] == 0
    assert got[("hex_backend_reset_timestamp_seconds", (cloud,))] == 1_800_000_000.0
    assert got[("hex_backend_state", (("backend", "local"), ("state", "awake")))] == 1
    assert got[("hex_host_cpu_percent", ())] == 37.5
    assert got[("hex_host_memory_bytes", (("kind", "total"),))] == 8 << 30
    assert got[("hex_gpu_memory_bytes", (("gpu", "0"), ("kind", "used")))] == 1 << 30


def test_dead_letters_still_open_are_counted_per_actor() -> None:
    from schemas import DeadLetter

    g = Gatherer()
    g.supervisor({"memory": {"state": "live"}, "brain": {"state": "live"}})
    for event_id in ("e1", "e2"):
        g.dead_letter(DeadLetter(actor="memory", event_id=event_id, offset=1, topic="memory.add"))
    g.dead_letter(
        DeadLetter(actor="memory", event_id="e1", offset=1, topic="memory.add", status="retried")
    )
    got = samples(g)
    assert got[("hex_actor_dead_letters", (("actor", "memory"),))] == 1
    assert got[("hex_actor_dead_letters", (("actor", "brain"),))] == 0
