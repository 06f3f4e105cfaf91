from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.harness import Hex

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share the cores: one thread per model in every process a test starts
    # (hexbus.models.model_threads). Two llama.cpp models of two threads each on two cores
    # wait on each other at every layer and slow to a crawl.
    os.environ.setdefault("HEXBUS_MODEL_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


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


# In the command line of Hex's own processes: the supervisor and the CLI, actors (any module
# target), the broker, sandboxed audits and plugin runs.
OURS = re.compile(r"-m (hexbus\.(cli|run|broker)|actors\.[a-z_.]+(trial|runner))\b|/bin/hexbus\b")


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
        if OURS.search(line):
            ours.append((child, line))
    # Watched, not waited for: a wait would reap children a Popen still owns.
    deadline = time.monotonic() + 5
    alive = [c for c, _ in ours]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [c for c in alive if _running(c)]
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


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


LONGEST = "tests/test_chaos.py"  # the chaos soak: two and a half minutes, a tenth of the suite


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On parallel workers (``scripts/test`` runs two, a module to each at a time): the chaos soak
    first, then every module with slow tests, then the rest, each module's tests in their order.
    Longest first, so that the two workers end together instead of one running the soak alone
    at the end."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    root = config.rootpath

    def rank(item: pytest.Item) -> int:
        if item.path.relative_to(root).as_posix() == LONGEST:
            return 0
        return 1 if item.path in slow else 2

    items.sort(key=rank)  # stable: each module's tests keep their order
