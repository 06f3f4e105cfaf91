"""The persona desk: an edit checked and recorded (its error at the document's line), a version's
text and the list, and the audit through the brain's own backend with its drift."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.brain.persona import PersonaError, error_line, parse_persona
from hexbus.testing import ActorHarness
from schemas import (
    PersonaAudit,
    PersonaAudited,
    PersonaAuditProgress,
    PersonaChanged,
    PersonaEdit,
    PersonaGet,
    PersonaState,
)
from tests.actors.brain.test_actor import brain_with, harness, live, of_type, run, until
from tests.support.brain import Script, ScriptedBackend
from tests.support.harness import REPO

PERSONA = (REPO / "persona.toml").read_text(encoding="utf-8")


def error_of(text: str) -> str:
    with pytest.raises(PersonaError) as failed:
        parse_persona(text)
    return str(failed.value)


def assignments() -> list[tuple[int, str]]:
    """Every ``key = value`` line of the shipped persona whose value fits on its line."""
    found = []
    for number, line in enumerate(PERSONA.splitlines(), start=1):
        key, eq, value = line.partition("=")
        value = value.split("#")[0].strip()
        if (
            eq
            and not line.lstrip().startswith("#")
            and value
            and value[0] in "0123456789\"'tf"
            and not value.startswith(('"""', "'''"))
            and key.strip().replace("_", "").isalnum()
        ):
            found.append((number, key.strip()))
    return found


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(assignments()))
def test_a_wrong_value_is_reported_at_the_line_that_sets_it(line: tuple[int, str]) -> None:
    number, key = line
    lines = PERSONA.splitlines()
    lines[number - 1] = f"{key} = {{ wrong = [1, 2] }}"  # a table where no table belongs
    text = "\n".join(lines) + "\n"
    message = error_of(text)
    assert error_line(text, message) == number, message


def test_syntax_errors_and_unknown_keys_name_their_lines() -> None:
    lines = PERSONA.splitlines()
    broken = "\n".join([*lines[:5], "name = ", *lines[6:]])
    assert error_line(broken, error_of(broken)) == 6
    rows = PERSONA.splitlines()
    header = next(i for i, row in enumerate(rows, 1) if row.strip() == "[tsundere]")
    unknown = "\n".join([*rows[:header], "colour = 3", *rows[header:]])
    message = error_of(unknown)
    assert "colour" in message and error_line(unknown, message) == header + 1
    assert error_line("x = 1", "something without a key") == 0
    # A value that says "at line 3" is not a TOML error's position.
    said = PERSONA.replace('name = "', 'name = 7 # at line 3 "', 1)
    name_line = next(i for i, row in enumerate(rows, 1) if row.startswith("name ="))
    assert error_line(said, error_of(said)) == name_line
    # Lines inside a multi-line string are neither tables nor keys.
    tricky = '[tsundere]\nnote = """\n[phases]\nname = 1\n"""\ncolour = 2\n'
    assert error_line(tricky, "x: unknown key `tsundere.colour`: remove it") == 6
    assert error_line(tricky, "x: `phases[0].name` must be str") == 0


def test_an_edit_is_checked_recorded_and_used_and_a_bad_one_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    async def scenario() -> ActorHarness[Any]:
        h = harness(tmp_path, brain_with(ScriptedBackend([Script(["hi"])])))
        await live(h)
        bad = PERSONA.replace('name = "', 'name = 3 #"', 1)
        await h.send(PersonaEdit(text=bad, note="oops", by="owner"), event_id="e1")
        good = PERSONA.replace("chaotic", "CHAOTIC", 1)
        await h.send(PersonaEdit(text=good, note="louder", by="owner"), event_id="e2")
        await h.send(PersonaEdit(text=good, by="owner"), event_id="e3")
        await h.send(PersonaGet(version=1), correlation="g1", source="web")
        await until(lambda: of_type(h, PersonaState), "the state")
        await h.stop()
        return h

    h = run(scenario)
    loaded, refused, edited, same = of_type(h, PersonaChanged)
    assert loaded.version == 1
    name_line = next(i for i, row in enumerate(PERSONA.splitlines(), 1) if row.startswith("name ="))
    assert refused.version == 1 and "name" in refused.error and refused.line == name_line
    assert edited.version == 2 and edited.note == "edited by owner: louder" and not edited.error
    assert same.version == 2 and same.note.startswith("no change")
    assert "CHAOTIC" in (tmp_path / "persona.toml").read_text()
    assert h.state.persona_version == 2 and "CHAOTIC" in str(h.actor.persona)
    (state,) = of_type(h, PersonaState)
    assert state.active == 2 and state.version == 1 and "CHAOTIC" not in state.text
    assert [v.version for v in state.versions] == [1, 2] and state.path.endswith("persona.toml")


def ended(h: ActorHarness[Any], n: int) -> Callable[[], bool]:
    return lambda: len(of_type(h, PersonaAudited)) == n


def test_the_audit_runs_through_the_brains_backend_and_reports_drift(tmp_path: Path) -> None:
    backend = ScriptedBackend([Script(["Hmph. Fine, I'll help, idiot."])])

    async def scenario() -> ActorHarness[Any]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        for n in (1, 2):
            await h.send(PersonaAudit(limit=4, by="owner"), correlation=f"a{n}", source="web")
            await until(ended(h, n), "the audit's end", 30)
        await h.stop()
        return h

    h = run(scenario)
    first, second = of_type(h, PersonaAudited)
    summary = json.loads(first.summary)
    assert not first.error and summary["scenarios"] == 4 and not first.previous and not first.drift
    assert second.previous == first.report and json.loads(second.drift)["drift"] is False
    assert "replies" not in summary
    progress = [(p.done, p.total) for p in of_type(h, PersonaAuditProgress)]
    assert progress[:4] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(backend.prompts) == 8
    assert (tmp_path / "data" / "audits" / first.report).exists()
    envelope = next(e for e, _ in h.bus.published if isinstance(e.body, PersonaAudited))
    assert envelope.correlation == "a1" and envelope.topic.endswith(".web")


def test_an_audit_asked_while_one_runs_is_refused_with_its_progress(tmp_path: Path) -> None:
    backend = ScriptedBackend([Script(["Hmph.", "x"], hold_after=1)])

    async def scenario() -> ActorHarness[Any]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        await h.send(PersonaAudit(limit=2), correlation="a1", source="web")
        await asyncio.wait_for(backend.holding.wait(), 5)
        await h.send(PersonaAudit(limit=2), correlation="a2", source="web")
        await until(lambda: of_type(h, PersonaAudited), "the refusal")
        await h.stop()
        return h

    h = run(scenario)
    refused, stopped = of_type(h, PersonaAudited)
    assert refused.error.startswith("an audit is running (0 of 0)")
    # The brain stopped with the first audit in flight: its asker is told, not left waiting.
    assert stopped.error.startswith("the brain stopped during the audit")


def test_drift_compares_only_runs_over_the_same_scenarios_and_a_failed_audit_still_answers(
    tmp_path: Path,
) -> None:
    backend = ScriptedBackend([Script(["Hmph."])])

    async def scenario() -> ActorHarness[Any]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        for n, limit in enumerate((2, 3, 2), start=1):
            await h.send(PersonaAudit(limit=limit), correlation=f"a{n}", source="web")
            await until(ended(h, n), "the audit's end", 30)
        # Where reports go is taken by a file: the audit fails, and says so to the asker.
        audits = tmp_path / "data" / "audits"
        audits.rename(tmp_path / "audits-aside")
        audits.write_text("not a folder")
        await h.send(PersonaAudit(limit=1), correlation="a4", source="web")
        await until(ended(h, 4), "the failed audit's answer", 30)
        await h.stop()
        return h

    h = run(scenario)
    two, three, two_again, failed = of_type(h, PersonaAudited)
    assert not three.previous and not three.drift  # no earlier run of the first 3
    assert two_again.previous == two.report  # not the run of 3, newer as it is
    assert failed.error.startswith("the audit failed: FileExistsError"), failed.error
