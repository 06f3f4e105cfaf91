"""The recall benchmark's own data (bench/recall_data): sound enough to judge a ranker by.

Not the ranker's tests: these only check that every question can be answered from its
history (evidence ids exist and were said before the question), that the set is as large
and as varied as bench/recall.py promises, and that each history is a long, many-day chat.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "bench" / "recall_data"
KINDS = ("single-hop", "multi-hop", "temporal", "open-domain")
SLUGS = sorted(f.name.removesuffix(".history.jsonl") for f in DATA.glob("*.history.jsonl"))


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def load(slug: str) -> tuple[list[dict[str, str]], list[dict[str, object]]]:
    history = (DATA / f"{slug}.history.jsonl").read_text(encoding="utf-8").splitlines()
    questions = json.loads((DATA / f"{slug}.questions.json").read_text(encoding="utf-8"))
    return [json.loads(line) for line in history if line.strip()], questions


def test_the_set_is_large_and_covers_every_kind() -> None:
    kinds: Counter[str] = Counter()
    for slug in SLUGS:
        kinds.update(str(q["kind"]) for q in load(slug)[1])
    assert len(SLUGS) >= 4 and sum(kinds.values()) >= 300
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 50, kinds


@pytest.mark.parametrize("slug", SLUGS)
def test_every_question_is_answerable_from_its_history(slug: str) -> None:
    turns, questions = load(slug)
    at = {t["id"]: when(t["timestamp"]) for t in turns}
    assert len(at) == len(turns), "turn ids are unique"
    assert [when(t["timestamp"]) for t in turns] == sorted(at.values()), "turns in time order"
    days = {d.date() for d in at.values()}
    assert len(turns) >= 400 and len(days) >= 30 and len({t["speaker"] for t in turns}) >= 2
    assert len({q["id"] for q in questions}) == len(questions)
    for q in questions:
        evidence = q["evidence"]
        assert isinstance(evidence, list) and evidence, q["id"]
        assert all(e in at for e in evidence), q["id"]
        assert max(at[e] for e in evidence) <= when(str(q["asked_at"])), q["id"]
        if q["kind"] == "multi-hop":  # across chats: evidence from at least two days
            assert len({at[e].date() for e in evidence}) >= 2, q["id"]
