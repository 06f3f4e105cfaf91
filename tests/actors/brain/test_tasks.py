"""brain.task: summaries and contradiction checks the memory actor asks of the brain's model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from actors.brain import tasks
from hexbus.ask import ask
from schemas import BrainTask, BrainTaskResult, Fact
from tests.support.brain import start_brain
from tests.support.harness import Hex

TRANSCRIPT = "Sam: my sister Jo gets married on 12 June\nHex: Congratulations to Jo!\nSam: I am allergic to cats"


def summarize(raw: object) -> BrainTaskResult:
    return tasks.parse(
        BrainTask(kind="summarize", text=TRANSCRIPT),
        raw if isinstance(raw, str) else json.dumps(raw),
    )


def test_a_summary_keeps_only_facts_whose_quote_is_in_the_transcript() -> None:
    result = summarize(
        {
            "summary": "Sam  talked about  Jo's wedding.",
            "facts": [
                {
                    "text": "Sam's sister Jo marries on 12 June",
                    "quote": "my sister Jo gets MARRIED on 12 june",
                },
                {"text": "Sam owns a yacht", "quote": "I own a yacht"},  # never said: an invention
                {"text": "", "quote": "I am allergic to cats"},
                "not an object",
            ],
        }
    )
    assert result == BrainTaskResult(
        summary="Sam talked about Jo's wedding.",
        facts=(
            Fact(
                text="Sam's sister Jo marries on 12 June",
                quote="my sister Jo gets MARRIED on 12 june",
            ),
        ),
    )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("the conversation was nice", "not a JSON object"),
        ('{"summary": ', "not a JSON object"),
        ('{"summary": 1,}', "not JSON"),
        ('["a"]', "not a JSON object"),
        ({"summary": "", "facts": []}, "empty summary"),
    ],
)
def test_unusable_answers_are_errors_not_exceptions(raw: object, error: str) -> None:
    assert error in summarize(raw).error


def test_a_contradiction_verdict_must_be_a_boolean() -> None:
    task = BrainTask(kind="contradiction", text="Maya lives in Porto", other="Maya lives in Lisbon")
    assert tasks.parse(task, '{"contradicts": true}') == BrainTaskResult(contradicts=True)
    assert tasks.parse(task, 'Sure! {"contradicts": false}') == BrainTaskResult(contradicts=False)
    assert "true/false" in tasks.parse(task, '{"contradicts": "yes"}').error


def test_a_draft_is_the_new_text_with_its_reason_and_never_empty() -> None:
    task = BrainTask(kind="draft", text="be less formal", other="Short punchy sentences.")
    turns, schema, _ = tasks.messages(task)
    assert schema is tasks.DRAFT_SCHEMA
    assert "be less formal" in turns[1].content and "Short punchy sentences." in turns[1].content
    answer = '{"text": "  Loose, easy sentences. ", "reason": "less   stiff"}'
    assert tasks.parse(task, answer) == BrainTaskResult(
        summary="Loose, easy sentences.", reason="less stiff"
    )
    assert "no text" in tasks.parse(task, '{"text": "  ", "reason": "x"}').error
    assert tasks.parse(task, '{"text": "Calm."}').reason == ""


def test_a_reflection_may_change_nothing_and_a_change_without_text_is_none() -> None:
    task = BrainTask(kind="reflect", text="- Pia: you're way too formal", other="Plain words.")
    turns, schema, _ = tasks.messages(task)
    assert schema is tasks.REFLECT_SCHEMA
    assert "Pia: you're way too formal" in turns[1].content and "Plain words." in turns[1].content
    answer = '{"change": true, "text": " Easy, loose words. ", "reason": "they  find me stiff"}'
    assert tasks.parse(task, answer) == BrainTaskResult(
        summary="Easy, loose words.", reason="they find me stiff"
    )
    nothing = tasks.parse(task, '{"change": false, "text": "ignored", "reason": "a bad day"}')
    assert nothing == BrainTaskResult(reason="a bad day")
    assert tasks.parse(task, '{"change": true, "text": " "}') == BrainTaskResult()
    assert "true/false" in tasks.parse(task, '{"change": "maybe", "text": "x"}').error


def test_prompts_carry_the_texts_and_bound_the_transcript() -> None:
    turns, schema, max_tokens = tasks.messages(BrainTask(kind="summarize", text="x" * 50_000))
    assert len(turns[1].content) == tasks.MAX_TRANSCRIPT_CHARS and schema is tasks.SUMMARY_SCHEMA
    turns, schema, max_tokens = tasks.messages(
        BrainTask(kind="contradiction", text="old", other="new")
    )
    assert turns[1].content == "Older: old\nNewer: new" and max_tokens <= 32


@pytest.mark.process
@pytest.mark.slow
def test_the_real_brain_answers_tasks_with_its_model(hex_factory: Callable[..., Hex]) -> None:
    hx = start_brain(hex_factory)

    async def three() -> tuple[BrainTaskResult, BrainTaskResult, BrainTaskResult]:
        summary, _ = await ask(
            hx.endpoints, BrainTask(kind="summarize", text=TRANSCRIPT), BrainTaskResult, timeout=120
        )
        verdict, _ = await ask(
            hx.endpoints,
            BrainTask(
                kind="contradiction", text="Maya lives in Porto", other="Maya lives in Lisbon"
            ),
            BrainTaskResult,
            timeout=60,
        )
        thought, _ = await ask(
            hx.endpoints,
            BrainTask(
                kind="reflect",
                text="- Pia: you're way too formal\n- Bo: you sound like a customer service bot",
                other="Short, punchy sentences.",
            ),
            BrainTaskResult,
            timeout=120,
        )
        return summary, verdict, thought

    summary, verdict, thought = asyncio.run(three())
    # A 135M model: structure, not wit. A summary or an honest error; facts only with real quotes.
    assert summary.summary or summary.error
    assert all(f.quote.lower() in TRANSCRIPT.lower() for f in summary.facts)
    assert not verdict.error and isinstance(verdict.contradicts, bool)
    # A reflection, grammar-bound: a verdict the selfmod actor can use (a new text, or none).
    assert not thought.error, thought.error
    assert not thought.facts and len(thought.summary) <= 1000
    assert "brain.task" in hx.log()
