from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
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


OURS = ("hexbus", "actors.", "tests.")  # in the command line of Hex's own processes


@pytest.fixture(autouse=True, scope="module")
def no_process_outlives_its_module() -> Iterator[None]:
    """Hex processes a module started and left running (a sandboxed audit still on the model,
    an actor a failed test never stopped) are killed at its end and named in the log: left
    alone, they take the cores from every test after them, which then fail on time. Named, not
    failed: the module's own tests judge what they leave (``warnings`` would be errors here)."""
    yield
    me = psutil.Process()
    ours = []
    for child in me.children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if any(mark in line for mark in OURS):
            ours.append((child, line))
    _, alive = psutil.wait_procs([c for c, _ in ours], timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            continue
        line = next(text for c, text in ours if c is child)
        print(
            f"\nhex-tests: killed a process that outlived its module: {line[:300]}",
            file=sys.__stderr__,
        )
