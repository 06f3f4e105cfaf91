from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.harness import Hex

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hex_factory() -> Iterator[Callable[..., Hex]]:
    made: list[Hex] = []

    def make(config: str, root: Path | None = None) -> Hex:
        h = Hex(config, root=root)
        made.append(h)
        return h

    yield make
    for h in made:
        h.discard()
