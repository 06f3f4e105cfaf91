"""Fixtures of the Discord actor's process tests (helpers live in tests/support/discord)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakediscord import FakeDiscord
from tests.support.harness import Hex


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord(token="test-token") as server:
        yield server


@pytest.fixture
def hexes() -> Iterator[list[Hex]]:
    made: list[Hex] = []
    yield made
    for hx in made:
        hx.discard()
