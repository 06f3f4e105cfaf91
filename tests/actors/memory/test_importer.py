"""Chat history files for `hexbus memory import`: line-by-line checks and batching."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.memory.importer import BATCH_BYTES, HistoryError, batches, read_history
from hexbus import codec
from schemas import ImportedTurn


def line(**fields: object) -> str:
    base: dict[str, object] = {
        "id": "1",
        "conversation": "discord:general",
        "speaker": "Maya",
        "text": "my cat is called Biscuit",
        "timestamp": "2026-03-02T18:04:11Z",
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


def test_good_lines_become_turns_with_their_ids_roles_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(
        "\n".join(
            [
                line(id="a1", person_id="discord:1001", channel_name="general", reactions=3),
                line(id="a2", speaker="Hex", text="Biscuit is a great name!", timestamp=1772474700),
                line(
                    id=7,
                    conversation="dm-theo",
                    speaker="Theo",
                    text="hi",
                    timestamp="2026-03-02 19:00:00",
                ),
                "",
            ]
        ),
        encoding="utf-8",
    )
    turns, problems = read_history(path)
    assert problems == []
    assert [t.id for t in turns] == ["a1", "a2", "7"]
    first, reply, third = turns
    assert first.person_id == "discord:1001" and first.role == "user"
    assert first.meta == {"channel_name": "general", "reactions": "3"}
    assert first.at == pytest.approx(1772474651.0)
    assert reply.role == "assistant" and reply.at == 1772474700.0
    assert third.conversation == "import:dm-theo"  # a bare name gets a platform
    assert third.at == pytest.approx(1772478000.0)  # a naive time is UTC


def test_bad_lines_are_reported_by_number_and_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    rows = [
        line(id="ok1"),
        "{not json",
        line(id="ok2", text=None),
        line(id="ok3", timestamp="last tuesday"),
        "[1, 2]",
        line(id="ok1", text="a second line with the first id"),
        line(id="", text="no id"),
        line(id="ok4", text="   "),
        line(id="ok5", role="narrator"),
        line(id="ok6", speaker=5),
        line(id="ok7", text="the last good one"),
    ]
    path.write_bytes("\n".join(rows).encode() + b"\n\xff\xfe broken bytes\n")
    turns, problems = read_history(path)
    assert [t.id for t in turns] == ["ok1", "ok7"]
    assert problems == [
        "line 2: not JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 3: missing text",
        "line 4: bad timestamp 'last tuesday': Invalid isoformat string: 'last tuesday'",
        "line 5: not a JSON object",
        "line 6: id 'ok1' already used on line 1",
        "line 7: id must be non-empty text or a number",
        "line 8: text is empty",
        "line 9: role must be user or assistant",
        "line 10: speaker must be text",
        "line 12: not UTF-8 text",
    ]


def test_a_file_with_nothing_usable_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=r"cannot read .*missing\.jsonl"):
        read_history(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(HistoryError, match="no usable turns \\(it is empty\\)"):
        read_history(empty)
    junk = tmp_path / "junk.jsonl"
    junk.write_text("nope\nnope\n")
    with pytest.raises(HistoryError, match="no usable turns \\(line 1: not JSON"):
        read_history(junk)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=3000).filter(str.strip), min_size=1, max_size=400))
def test_batches_keep_every_turn_in_order_and_fit_an_envelope(texts: list[str]) -> None:
    turns = [
        ImportedTurn(id=str(i), conversation="x:y", speaker="S", text=t, at=float(i))
        for i, t in enumerate(texts)
    ]
    events = list(batches(turns, "f.jsonl"))
    assert [t for e in events for t in e.turns] == turns
    for event in events:
        size = len(msgspec.msgpack.encode(event))
        assert size < codec.MAX_ENVELOPE_BYTES // 2
        assert len(event.turns) == 1 or size <= BATCH_BYTES + 4096
