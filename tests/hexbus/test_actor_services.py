"""The base class's services, in-process: spawn, load_model, retries and dead letters, the crash marker."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
import structlog

from actors.diag.actor import CountState
from hexbus import Actor, LazyModel, ModelMissing, NoConfig, NoState, on
from hexbus.codec import decode_message
from hexbus.deadletter import CrashMarker, LetterError, find_letter, open_letters
from hexbus.models import THREADS_ENV, model_threads, package_folder, require_file
from hexbus.snapshots import load_snapshot
from hexbus.testing import ActorHarness
from schemas import ActorLifecycle, DeadLetter, Event, ProbeDurable, Redrive


class Flaky(Actor[NoConfig, NoState]):
    """Raises on a probe as many times as its note says (``fail:2``), then counts it."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.durable",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.failures: dict[int, int] = {}
        self.applied: list[int] = []

    @on(ProbeDurable)
    async def count(self, event: ProbeDurable) -> None:
        wanted = int(event.note.removeprefix("fail:") or 0) if event.note.startswith("fail:") else 0
        seen = self.failures.get(event.n, 0)
        if seen < wanted:
            self.failures[event.n] = seen + 1
            raise RuntimeError(f"probe {event.n} failed ({seen + 1})")
        self.applied.append(event.n)


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def letters_of(events: list[Event]) -> list[DeadLetter]:
    return [e for e in events if isinstance(e, DeadLetter)]


def test_a_handler_that_fails_then_succeeds_is_applied_once_without_a_letter() -> None:
    async def scenario() -> None:
        h = ActorHarness(Flaky)
        out = await h.send(ProbeDurable(n=1, note="fail:2"))
        assert h.actor.applied == [1]
        assert [e.change for e in out if isinstance(e, ActorLifecycle)] == ["error", "error"]
        assert not letters_of(out)
        assert h.runtime.applied == 1

    run(scenario())


def test_a_handler_that_always_fails_is_dead_lettered_with_its_event_and_the_next_one_applies() -> (
    None
):
    async def scenario() -> None:
        h = ActorHarness(Flaky, dead_letter_after=4)
        out = await h.send(ProbeDurable(n=7, note="fail:99"), event_id="poison", blob=b"raw bytes")
        (letter,) = letters_of(out)
        assert (letter.actor, letter.event_id, letter.status, letter.cause, letter.attempts) == (
            "test",
            "poison",
            "dead",
            "raised",
            4,
        )
        assert "RuntimeError: probe 7 failed (4)" in letter.error
        original, _ = decode_message([letter.topic.encode(), letter.envelope])
        assert original.body == ProbeDurable(n=7, note="fail:99") and original.id == "poison"
        assert h.bus.published[-1][1] == b"raw bytes"  # the letter carries the event's blob
        assert h.runtime.applied == 1 and h.actor.applied == []
        await h.send(ProbeDurable(n=8))
        assert h.actor.applied == [8]

    run(scenario())


def test_a_redrive_applies_the_letter_again_at_a_new_offset_and_reports_retried() -> None:
    async def scenario() -> None:
        h = ActorHarness(Flaky)
        out = await h.send(ProbeDurable(n=3, note="fail:3"), event_id="poison")
        (letter,) = letters_of(out)
        out = await h.send(
            Redrive(actor="test", event_id="poison", topic=letter.topic, envelope=letter.envelope),
            key="test",
            event_id="redrive-1",
        )
        assert h.actor.applied == [3]
        (report,) = letters_of(out)
        assert (report.event_id, report.status, report.envelope) == ("poison", "retried", b"")
        assert h.runtime.applied == 2

    run(scenario())


def test_open_letters_folds_status_changes_and_keeps_the_envelope_and_blob() -> None:
    dead = DeadLetter(actor="a", event_id="e1", offset=5, topic="probe.durable", envelope=b"env")
    other = DeadLetter(actor="a", event_id="e2", offset=6, topic="probe.durable", envelope=b"x")
    retried = msgspec.structs.replace(dead, status="retried", envelope=b"")
    again = msgspec.structs.replace(other, attempts=6, envelope=b"", error="still")
    folded = open_letters([(dead, b"blob"), (other, None), (retried, None), (again, None)])
    assert list(folded) == ["a/e2"]
    letter, blob = folded["a/e2"]
    assert letter.envelope == b"x" and letter.error == "still" and blob is None


def test_an_event_two_actors_failed_on_is_two_letters_named_by_actor() -> None:
    brain = DeadLetter(actor="brain", event_id="e1", offset=5, topic="chat.message", envelope=b"b")
    memory = msgspec.structs.replace(brain, actor="memory", envelope=b"m")
    dead = open_letters([(brain, None), (memory, None)])
    assert sorted(dead) == ["brain/e1", "memory/e1"]
    assert find_letter(dead, "memory/e1")[0].envelope == b"m"
    with pytest.raises(LetterError, match="2 actors have a letter for e1: name one of"):
        find_letter(dead, "e1")
    assert find_letter(open_letters([(brain, None)]), "e1")[0].actor == "brain"
    with pytest.raises(LetterError, match="no dead letter 'e9'"):
        find_letter(dead, "e9")


def test_crash_marker_counts_processes_that_died_on_the_same_event(tmp_path: Path) -> None:
    path = tmp_path / "inflight"
    marker = CrashMarker(path)
    assert marker.crashes == 0
    marker.start(10, "a")
    marker.finish(10)
    marker.start(11, "b")  # this process "dies" here
    marker.close()
    for died in (1, 2, 3):
        marker = CrashMarker(path)
        assert marker.crashed_offset == 11
        assert (marker.crashes_at(11, "b"), marker.crashes_at(12, "c")) == (died, 0)
        assert marker.crashes_at(11, "another event at that offset") == 0
        marker.start(10, "a")  # replaying the events before it leaves the count alone
        marker.finish(10)
        marker.start(11, "b")
        marker.close()
    marker = CrashMarker(path)
    marker.finish(11)
    marker.close()
    assert CrashMarker(path).crashes == 0
    path.write_bytes(b"\x00" * 13)  # the old format: no crash
    assert CrashMarker(path).crashes == 0


def test_a_dead_offset_is_saved_at_once_and_skipped_by_every_later_process(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        h = ActorHarness(Flaky, data_dir=tmp_path)
        await h.send(ProbeDurable(n=1, note="fail:9"), event_id="poison")
        _, offset, recent, dead, _ = load_snapshot(
            tmp_path / "snapshot.msgpack", NoState, structlog.get_logger()
        )
        assert (offset, dead, "poison" in recent) == (1, [1], True)
        later = ActorHarness(Flaky, data_dir=tmp_path)
        later.runtime.dead.update(dict.fromkeys(dead))
        later.runtime.recent.clear()  # as after a store resumed behind the snapshot
        out = await later.send(ProbeDurable(n=1, note="fail:9"), event_id="poison", offset=1)
        assert out == [] and later.actor.applied == [] and later.runtime.applied == 1

    run(scenario())


class Stubborn(Actor[NoConfig, CountState]):
    """Changes its state, then raises: what a half-applied event leaves behind."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.durable",)
    state_type = CountState

    @on(ProbeDurable)
    async def count(self, event: ProbeDurable) -> None:
        self.state.count += 1
        raise RuntimeError("half done")


def test_a_stop_between_retries_leaves_the_event_unapplied_and_the_state_unsaved() -> None:
    async def scenario() -> None:
        h = ActorHarness(Stubborn)
        h.runtime.retry_backoff_s = 0.05
        sending = asyncio.ensure_future(h.send(ProbeDurable(n=1)))
        await asyncio.sleep(0.02)
        h.runtime.stopping.set()
        out = await sending
        assert [e for e in out if isinstance(e, DeadLetter)] == []
        assert h.runtime.applied == 0 and h.runtime.unclean

    run(scenario())


def test_a_letter_retried_twice_is_applied_once_and_an_unreadable_one_is_reported() -> None:
    async def scenario() -> None:
        h = ActorHarness(Flaky)
        out = await h.send(ProbeDurable(n=3, note="fail:3"), event_id="poison")
        (letter,) = letters_of(out)
        for attempt in ("r1", "r2"):
            out = await h.send(
                Redrive(
                    actor="test", event_id="poison", topic=letter.topic, envelope=letter.envelope
                ),
                key="test",
                event_id=attempt,
            )
            (report,) = letters_of(out)
            assert report.status == "retried" and report.event_id == "poison"
            assert h.bus.published[-1][0].causation == attempt
        assert h.actor.applied == [3]
        out = await h.send(
            Redrive(actor="test", event_id="x", topic=letter.topic, envelope=b"\xc1 not msgpack"),
            key="test",
            event_id="r3",
        )
        (report,) = letters_of(out)
        assert report.status == "dead" and "cannot be read" in report.error
        assert h.bus.published[-1][0].causation == "r3"

    run(scenario())


class Worker(Actor[NoConfig, NoState]):
    async def setup(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def forever(self) -> None:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def broken(self) -> None:
        raise OSError("disk went away")


def test_spawn_reports_a_failed_task_and_stop_cancels_the_rest() -> None:
    async def scenario() -> None:
        h = ActorHarness(Worker)
        await h.setup()
        task = h.actor.spawn(h.actor.forever(), name="forever")
        assert task.get_name() == "test.forever"
        h.actor.spawn(h.actor.broken(), name="broken")
        await h.actor.started.wait()
        for _ in range(10):
            await asyncio.sleep(0)
        (error,) = h.errors
        assert isinstance(error, ActorLifecycle)
        assert error.event_type == "task:test.broken" and "OSError: disk went away" in error.reason
        await h.stop()
        assert h.actor.cancelled and task.cancelled() and not h.actor._tasks

    run(scenario())


def test_spawn_thread_runs_a_blocking_loop_reports_its_failure_and_stop_ends_it() -> None:
    ran = threading.Event()
    ended = threading.Event()

    def loop(stop: threading.Event) -> None:
        ran.set()
        while not stop.wait(0.01):  # a device read, say
            pass
        ended.set()

    def broken(stop: threading.Event) -> None:
        raise OSError("camera unplugged")

    async def scenario() -> None:
        h = ActorHarness(Worker)
        await h.setup()
        task = h.actor.spawn_thread(loop, name="capture")
        h.actor.spawn_thread(broken, name="broken")
        await asyncio.to_thread(ran.wait, 5)
        for _ in range(50):
            if h.errors:
                break
            await asyncio.sleep(0.01)
        (error,) = h.errors
        assert isinstance(error, ActorLifecycle)
        assert (
            error.event_type == "task:test.broken" and "OSError: camera unplugged" in error.reason
        )
        assert not task.done()  # the loop was not stopped by its neighbour's failure
        await h.stop()
        assert ended.is_set() and task.cancelled() and not h.actor._tasks

    run(scenario())


def test_lazy_model_loads_once_for_concurrent_callers_and_retries_after_a_failure() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def load() -> str:
        calls.append(1)
        gate.wait(5)
        if len(calls) == 1:
            raise ModelMissing("weights.bin does not exist")
        return "model"

    model = LazyModel("toy", load)
    with pytest.raises(ModelMissing):
        gate.set()
        model.get()
    gate.clear()
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(model.get())) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join()
    assert results == ["model"] * 4 and len(calls) == 2 and model.loaded
    assert model.load_s is not None


def test_load_model_shows_progress_in_the_detail_and_a_missing_file_in_one_line(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        h = ActorHarness(Worker)
        seen: list[str] = []

        def load() -> str:
            seen.append(h.actor.detail)
            return "weights"

        assert await h.actor.load_model(LazyModel("toy-model", load)) == "weights"
        assert seen == ["loading toy-model"]
        assert h.actor.detail.startswith("toy-model ") and h.actor.detail.endswith("s")
        missing = LazyModel(
            "gone", lambda: require_file(tmp_path / "w.bin", "model file", "pip install x")
        )
        with pytest.raises(ModelMissing) as info:
            await h.actor.load_model(missing)
        assert str(info.value) == (
            f"model file {tmp_path / 'w.bin'} does not exist: pip install x (see ../shared/MODELS.md)"
        )
        assert "\n" not in str(info.value) and h.actor.detail == "gone missing"
        with pytest.raises(ModelMissing, match="the package no_such_model_pkg is not installed"):
            package_folder("no_such_model_pkg", "pip install it")

    run(scenario())


def test_model_threads_take_the_setting_capped_by_the_machines_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cores = os.cpu_count() or 1
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert model_threads(2) == 2 and model_threads(0) == cores
    monkeypatch.setenv(THREADS_ENV, "1")  # parallel test workers, two Hexes on two cores
    assert model_threads(2) == 1 and model_threads(0) == 1 and model_threads(1) == 1
    monkeypatch.setenv(THREADS_ENV, "8")
    assert model_threads(2) == 2
    for bad in ("", "0", "-1", "two"):  # not a cap: the setting stands
        monkeypatch.setenv(THREADS_ENV, bad)
        assert model_threads(3) == 3
