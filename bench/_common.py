"""What the bench scripts share: child processes, percentiles, progress lines and the JSON result.

Each script inserts the repository root into ``sys.path`` itself (they run as
``python bench/NAME.py``), then imports this module as ``bench._common``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")
Results: TypeAlias = "Queue[dict[str, Any]]"  # what each child process puts its figures on

# Children start fresh interpreters (never fork a process that has ZeroMQ contexts).
MP = multiprocessing.get_context("spawn")
_T0 = time.monotonic()


def progress(message: str) -> None:
    """One line of progress on stderr; stdout carries only the JSON result."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))


def parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(description or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a shorter run with fewer samples")
    return p


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed, as every Hex process does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float], prefix: str, digits: int = 3) -> dict[str, float | int]:
    """``{prefix}_p50 .. _max`` and the sample count, rounded."""
    if not values:
        return {f"{prefix}_n": 0}
    return {
        f"{prefix}_p50": round(percentile(values, 50), digits),
        f"{prefix}_p90": round(percentile(values, 90), digits),
        f"{prefix}_p99": round(percentile(values, 99), digits),
        f"{prefix}_max": round(max(values), digits),
        f"{prefix}_mean": round(sum(values) / len(values), digits),
        f"{prefix}_n": len(values),
    }


@contextmanager
def children() -> Iterator[Callable[..., SpawnProcess]]:
    """Yield ``start(target, *args)``; every child started through it is ended on the way out."""
    started: list[SpawnProcess] = []

    def start(target: Callable[..., None], *args: Any) -> SpawnProcess:
        proc = MP.Process(target=target, args=args, daemon=True)
        proc.start()
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.is_alive():
                proc.terminate()
        for proc in started:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(1)


def wait_event(event: Any, timeout: float, what: str) -> None:
    """Wait for a multiprocessing Event, failing with ``what`` on timeout."""
    if not event.wait(timeout):
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
