from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.harness import Hex

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hex_factory() -> Iterator[Callable[[str], Hex]]:
    made: list[Hex] = []

    def make(config: str) -> Hex:
        h = Hex(config)
        made.append(h)
        return h

    yield make
    for h in made:
        h.cleanup()
