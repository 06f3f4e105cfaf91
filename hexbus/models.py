"""One way to load a model: once, on first use, off the event loop, with a one-line error.

    whisper = LazyModel("whisper-base", load_whisper)   # load_whisper() -> WhisperModel, blocking
    model = await actor.load_model(whisper)             # in setup: progress shows in `hexbus status`
    model = whisper.get()                               # in a worker thread: loads if nobody did yet

The loader is a plain blocking function that returns the loaded object or raises
:class:`ModelMissing` with one line naming the file or package and the fix
(:func:`require_file` and :func:`package_folder` write those lines). Two threads
asking at once load it once; a failed load is retried by the next caller.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Generic, TypeVar

T = TypeVar("T")

MODELS_DOC: Final = "../shared/MODELS.md"
THREADS_ENV: Final = "HEXBUS_MODEL_THREADS"


def model_threads(configured: int) -> int:
    """The threads a model may use: ``configured`` (0: one per core), capped by the environment's
    ``HEXBUS_MODEL_THREADS`` where it is a positive number.

    The cap is for a machine that runs several Hexes side by side (the test suite's parallel
    workers): each model's threads then fit its share of the cores. Threads that wait on each
    other at every layer (llama.cpp's) slow to a crawl when they outnumber the free cores.
    """
    cores = os.cpu_count() or 1
    threads = configured if configured > 0 else cores
    cap = os.environ.get(THREADS_ENV, "")
    if cap.isdigit() and int(cap) > 0:
        threads = min(threads, int(cap))
    return max(1, threads)


class ModelMissing(Exception):
    """A model file, or the library that runs it, is not on this machine.

    The message is one line naming what is missing and how to get it; an actor whose
    setup raises it exits as unusable, and ``hexbus status`` shows the line.
    """


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type's name when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def require_file(path: Path, what: str, hint: str) -> Path:
    """``path`` if it is a file; else :class:`ModelMissing` naming it, the hint and MODELS.md."""
    if not path.is_file():
        raise ModelMissing(f"{what} {path} does not exist: {hint} (see {MODELS_DOC})")
    return path


def package_folder(module: str, hint: str) -> Path:
    """The folder of an installed package (model packages ship their files there), found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(f"the package {module} is not installed: {hint} (see {MODELS_DOC})")
    return Path(next(iter(spec.submodule_search_locations)))


class LazyModel(Generic[T]):
    """A model (any object that is slow to build) loaded once by whichever caller asks first.

    ``load`` blocks; call :meth:`get` from a worker thread or through
    :meth:`hexbus.Actor.load_model`, never on the event loop.
    """

    def __init__(self, name: str, load: Callable[[], T]) -> None:
        self.name = name
        self._load = load
        self._value: T | None = None
        self._lock = threading.Lock()
        self.load_s: float | None = None  # how long the load took, once loaded

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def get(self) -> T:
        """The model, loading it first if nobody has (raises :class:`ModelMissing`)."""
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                started = time.monotonic()
                self._value = self._load()
                self.load_s = time.monotonic() - started
            return self._value

    def __repr__(self) -> str:
        return f"LazyModel({self.name!r}, loaded={self.loaded})"


__all__ = [
    "MODELS_DOC",
    "LazyModel",
    "ModelMissing",
    "first_line",
    "package_folder",
    "require_file",
]
