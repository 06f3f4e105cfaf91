"""Type aliases shared across hexbus, and the shapes of actor services that plain classes take."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

import zmq

T = TypeVar("T")

Frames: TypeAlias = Sequence[bytes | zmq.Frame]
Topic: TypeAlias = str
Offset: TypeAlias = int
Session: TypeAlias = int
Seq: TypeAlias = int


class Spawn(Protocol):
    """:meth:`hexbus.Actor.spawn` as a plain class receives it: a named background task the runtime
    tracks, reports and cancels. Passing it in keeps the class testable without an actor."""

    def __call__(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]: ...
