"""The memory actor as a thin dispatcher, driven in-process by hexbus.testing (no processes)."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.memory.actor import MemoryActor
from actors.memory.config import MemoryConfig
from actors.memory.embed import embedding_model
from hexbus.models import ModelMissing
from hexbus.testing import ActorHarness
from schemas import (
    ActorLifecycle,
    BrainTask,
    BrainTaskResult,
    ChatMessage,
    Event,
    MemoryAdd,
    MemoryChanged,
    MemoryEdit,
    MemoryExport,
    MemoryExported,
    MemoryQuery,
    MemoryResult,
)
from tests.support.memory import OWNER, embedder

PACKAGE = Path(__file__).resolve().parents[3] / "actors" / "memory"

Scenario = Callable[[ActorHarness[MemoryActor]], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, **config: Any) -> None:
    embedder()  # loaded once per test process, shared by every harness

    async def main() -> None:
        h = ActorHarness(MemoryActor, {"owners": [OWNER], **config}, data_dir=tmp_path)
        await h.setup()
        try:
            await scenario(h)
        finally:
            await h.stop()

    asyncio.run(main())


def changes(events: list[Event]) -> list[MemoryChanged]:
    return [e for e in events if isinstance(e, MemoryChanged)]


@pytest.mark.slow  # loads the embedding model: about 6 s
def test_requests_are_answered_and_changes_reported(tmp_path: Path) -> None:
    async def scenario(h: ActorHarness[MemoryActor]) -> None:
        (added,) = changes(await h.send(MemoryAdd(text="Ana keeps bees", person_id="ana")))
        assert added.action == "added" and len(added.ids) == 1
        (result,) = await h.send(MemoryQuery(text="insects", person_id="ana"), correlation="q1")
        assert isinstance(result, MemoryResult) and [h.id for h in result.hits] == list(added.ids)
        (refused,) = changes(await h.send(MemoryEdit(id="m_nope", approve=True)))
        assert (refused.action, refused.detail) == ("refused", "no memory m_nope")
        out = await h.send(MemoryExport(), correlation="x1")
        assert [e.count for e in out if isinstance(e, MemoryExported)] == [1]
        assert not h.errors

    run(tmp_path, scenario)


@pytest.mark.slow
def test_the_store_offset_is_where_a_restart_resumes(tmp_path: Path) -> None:
    async def first(h: ActorHarness[MemoryActor]) -> None:
        await h.send(MemoryAdd(text="Ana keeps bees"), offset=41)
        await h.send(MemoryAdd(text="   "), offset=42)  # refused, and still applied
        assert h.actor.resume_offset() == 42

    async def second(h: ActorHarness[MemoryActor]) -> None:
        assert h.actor.resume_offset() == 42
        assert h.actor.store.counts()["memories"] == 1

    run(tmp_path, first)
    run(tmp_path, second)


@pytest.mark.slow
def test_a_handler_that_fails_once_is_retried_and_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: ActorHarness[MemoryActor]) -> None:
        people = h.actor.store.people
        real = people.upsert
        calls: list[str] = []

        def flaky(person_id: str, *args: Any) -> None:
            calls.append(person_id)
            if len(calls) == 1:
                raise OSError("disk hiccup")  # inside the transaction: it rolls back
            real(person_id, *args)

        monkeypatch.setattr(people, "upsert", flaky)
        message = ChatMessage(
            platform="console",
            person_id="ana",
            display_name="Ana",
            channel="c1",
            text="I just adopted a grey cat called Pixel",
        )
        out = await h.send(message, offset=5)
        assert [e.change for e in out if isinstance(e, ActorLifecycle)] == ["error"]
        assert calls == ["ana", "ana"] and h.actor.resume_offset() == 5
        assert h.actor.store.counts()["turns"] == h.actor.store.counts()["memories"] == 1

    run(tmp_path, scenario)


@pytest.mark.slow
def test_background_tasks_are_spawned_by_name_and_stopped_before_teardown(
    tmp_path: Path,
) -> None:
    async def scenario(h: ActorHarness[MemoryActor]) -> None:
        await h.actor.on_live()
        names = {t.get_name() for t in h.actor._tasks}
        assert names == {"test.aging", "test.diaries", "test.hygiene", "test.reindex"}
        await h.actor.stop_tasks(5.0)
        assert not h.actor._tasks

    run(tmp_path, scenario)


def test_contradictions_are_judged_by_the_brain_over_the_bus(tmp_path: Path) -> None:
    async def scenario(h: ActorHarness[MemoryActor]) -> None:
        def judge(task: Event) -> BrainTaskResult:
            assert isinstance(task, BrainTask) and task.kind == "contradiction"
            old, new = task.text.split(), task.other.split()
            return BrainTaskResult(contradicts=old[:3] == new[:3] and old[3:] != new[3:])

        h.respond(BrainTask, judge)
        for text in ("Maya lives in Porto", "Maya lives in Lisbon"):
            await h.send(MemoryAdd(text=text, person_id="maya"))
        before = len(h.bus.published)
        while await h.actor.check_contradiction():
            pass
        (superseded,) = changes(h.published[before:])
        assert superseded.action == "superseded" and "Porto" in superseded.detail
        assert await h.actor.summarize() is False  # no turns: nothing to summarise

    run(tmp_path, scenario)


def test_a_missing_embedding_model_is_one_line_naming_the_folder(tmp_path: Path) -> None:
    async def main() -> None:
        h = ActorHarness(MemoryActor, {"embedder": str(tmp_path / "nowhere")}, data_dir=tmp_path)
        with pytest.raises(ModelMissing) as missing:
            await h.setup()
        line = str(missing.value)
        assert str(tmp_path / "nowhere") in line and "MODELS.md" in line and "\n" not in line
        assert h.actor.detail == "nowhere missing"

    asyncio.run(main())


def test_the_diary_settings_keep_their_names_in_supervisor_toml() -> None:
    table = {"journal_dir": "notes", "journal_importance": 0.5, "journal_scan_s": 0}
    config = msgspec.convert(table, MemoryConfig, strict=True)
    assert (config.diary_dir, config.diary_importance, config.diary_scan_s) == ("notes", 0.5, 0)
    with pytest.raises(msgspec.ValidationError, match="diary_dir"):
        msgspec.convert({"diary_dir": "notes"}, MemoryConfig, strict=True)


def test_the_packaged_model_shows_as_minilm_and_loads_once() -> None:
    assert embedding_model().name == "minilm" and embedding_model() is embedding_model("")


def test_background_work_goes_through_spawn_only() -> None:
    """No bare asyncio.create_task / loop.create_task / ensure_future in the memory package."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"create_task", "ensure_future"}
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
