"""The one interface every LLM backend speaks, and the errors the brain falls back on.

A backend streams text pieces for a list of chat turns, counts tokens with its
own tokenizer, and can produce a JSON object constrained to a schema (for the
reply's metadata). Blocking libraries (llama.cpp, exllamav2) run in worker
threads; HTTP backends are async. Every failure the caller can recover from by
trying the next backend is a :class:`BackendError`; a backend that cannot run on
this machine at all (no model file, no library) raises
:class:`hexbus.models.ModelMissing` from ``start``, with one line naming the fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import msgspec

from hexbus.models import LazyModel

Role = Literal["system", "user", "assistant"]
T = TypeVar("T")


class ChatTurn(msgspec.Struct, frozen=True):
    """One message of the prompt, in chat-template terms."""

    role: Role
    content: str


class Params(msgspec.Struct, frozen=True, kw_only=True):
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None


class Usage(msgspec.Struct, kw_only=True):
    """Filled in as a generation runs; complete once its stream ends."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float = 0.0
    seconds: float = 0.0
    truncated: bool = False  # generation stopped at max_tokens, likely mid-sentence


class BackendError(Exception):
    """The backend cannot serve this request now; the caller may try the next one."""


class BackendOverloaded(BackendError):
    """Rate-limited or out of quota (HTTP 429 and the like): the brain says it is sleepy and falls back."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelLoader(Protocol):
    """Loads a model off the event loop: :meth:`hexbus.Actor.load_model` in the brain (progress in
    ``hexbus status``), :func:`load_in_thread` anywhere else (tests, the audit, benchmarks)."""

    async def __call__(self, model: LazyModel[T]) -> T: ...


async def load_in_thread(model: LazyModel[T]) -> T:
    return await asyncio.to_thread(model.get)


class Stream(Protocol):
    """An async iterator of text pieces; ``usage`` is complete when it ends; ``aclose`` stops generation."""

    usage: Usage

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    name: str
    capacity: int  # generations it runs at once; the brain queues beyond that

    async def start(self) -> None:
        """Load the model or check the endpoint (raise ModelMissing or BackendError, one line)."""

    def stream(self, turns: list[ChatTurn], params: Params) -> Stream:
        """Start generating; iterate the result for text pieces as they arrive."""

    async def complete_json(
        self, turns: list[ChatTurn], schema: dict[str, Any], params: Params
    ) -> str:
        """A whole completion constrained (where the backend can) to a JSON object of ``schema``."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this backend's tokenizer."""

    async def close(self) -> None: ...
