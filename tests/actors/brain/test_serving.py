"""The serving record: which backend was answering which message when a brain died."""

from __future__ import annotations

from pathlib import Path

from actors.brain.serving import Serving, ServingRecord


def test_what_a_killed_incarnation_left_is_read_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "serving.json"
    first = ServingRecord(path)
    assert first.previous == {} and first.suspects() == set()
    assert first.start("m1") == 1
    first.asking("m1", "cloud")
    first.start("m2")
    first.asking("m2", "cloud")
    first.asking("m2", "llamacpp")  # fell back mid-reply
    first.done("m2")
    # killed here: m1 was being answered by "cloud"
    second = ServingRecord(path)
    assert second.previous == {"m1": Serving(backend="cloud", starts=1)}
    assert second.suspects() == {"cloud"}
    assert second.start("m1") == 2  # the second incarnation to start it
    third = ServingRecord(path)  # killed again before it chose a backend
    assert third.previous == {"m1": Serving(backend="", starts=2)} and third.suspects() == set()
    assert third.start("m1") == 3
    third.done("m1")
    assert ServingRecord(path).previous == {}


def test_a_damaged_record_is_read_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "serving.json"
    path.write_bytes(b'{"m1": {"backend": 3')
    assert ServingRecord(path).previous == {}
    path.write_bytes(b'["not", "a", "record"]')
    assert ServingRecord(path).previous == {}
