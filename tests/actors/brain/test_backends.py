"""Backends that cannot run here stay importable and step aside; the packaged model streams and stops."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
import time
from collections.abc import Iterator
from typing import TypeVar

import pytest

from actors.brain.backends import ChatTurn, Params
from actors.brain.backends.exllamav2 import ExLlamaV2Backend, ExLlamaV2Config
from actors.brain.backends.fallback import FallbackChain
from actors.brain.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from hexbus.models import ModelMissing

TURNS = [ChatTurn("user", "Name three colours.")]


@pytest.mark.skipif(
    importlib.util.find_spec("exllamav2") is not None, reason="exllamav2 is installed here"
)
def test_exllamav2_without_its_package_is_a_one_line_install_hint() -> None:
    backend = ExLlamaV2Backend(ExLlamaV2Config(model_dir="/models/none"))
    with pytest.raises(ModelMissing) as info:
        asyncio.run(backend.start())
    assert "pip install exllamav2" in str(info.value) and "\n" not in str(info.value)


def test_chain_starts_on_the_backend_that_can_run_and_serves_from_it() -> None:
    async def scenario() -> tuple[list[str], str, list[str]]:
        chain = FallbackChain(
            [
                ExLlamaV2Backend(ExLlamaV2Config(model_dir="/models/none")),
                LlamaCppBackend(LlamaCppConfig()),
            ]
        )
        await chain.start()
        stream = chain.stream(TURNS, Params(max_tokens=8, temperature=0.0, seed=0))
        pieces = [p async for p in stream]
        await chain.close()
        return pieces, stream.backend, chain.healthy()

    pieces, served_by, healthy = asyncio.run(scenario())
    assert pieces and served_by == "llamacpp" and healthy == ["llamacpp"]


def test_closing_a_stream_early_frees_the_model_for_the_next_one() -> None:
    async def scenario() -> int:
        backend = LlamaCppBackend(LlamaCppConfig())
        await backend.start()
        stream = backend.stream(TURNS, Params(max_tokens=64, temperature=0.0, seed=0))
        async for _ in stream:
            break  # stop after the first piece
        await stream.aclose()
        # capacity is 1: this would wait forever if the first stream still held the model
        again = [
            p async for p in backend.stream(TURNS, Params(max_tokens=4, temperature=0.0, seed=0))
        ]
        await backend.close()
        return len(again)

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) > 0


def test_a_reply_cancelled_again_while_it_closes_still_gives_the_model_back() -> None:
    """A burst of messages: each newer one cancels the reply in flight, and the next can land
    while the cancelled one is still closing its stream. The model must come back every time,
    or every later reply waits for it forever (the brain wedged, heartbeat and all)."""

    async def scenario() -> int:
        backend = LlamaCppBackend(LlamaCppConfig())
        await backend.start()

        async def reply() -> None:
            stream = backend.stream(
                [ChatTurn("user", "Tell me a long story about spoons.")],
                Params(max_tokens=200, temperature=0.0, seed=0),
            )
            try:
                async for _ in stream:
                    pass
            finally:
                await stream.aclose()

        for delay in (0.0, 0.05, 0.3):
            task = asyncio.get_running_loop().create_task(reply())
            await asyncio.sleep(delay)
            task.cancel()
            for _ in range(3):  # the second cancellation lands in the first one's cleanup
                await asyncio.sleep(0)
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        again = [
            p async for p in backend.stream(TURNS, Params(max_tokens=4, temperature=0.0, seed=0))
        ]
        await backend.close()
        return len(again)

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) > 0


def test_missing_model_file_names_the_path_and_models_md() -> None:
    backend = LlamaCppBackend(LlamaCppConfig(model_path="/nowhere/model.gguf"))
    with pytest.raises(ModelMissing) as info:
        asyncio.run(backend.start())
    assert "/nowhere/model.gguf" in str(info.value) and "MODELS.md" in str(info.value)


W = TypeVar("W")


def in_place(backend: LlamaCppBackend, wrapper: W) -> W:
    """``wrapper`` (around the backend's one model instance) becomes that instance."""
    backend._models = [wrapper]
    backend._free = asyncio.Queue()
    backend._free.put_nowait(wrapper)
    return wrapper


async def cancel_then_reply(backend: LlamaCppBackend, request: asyncio.Future[str]) -> int:
    """Cancel a JSON request, then stream a short reply (which needs the model back) and close:
    the reply's pieces."""
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    pieces = [p async for p in backend.stream(TURNS, Params(max_tokens=4, temperature=0.0, seed=0))]
    assert pieces
    await backend.close()
    return len(pieces)


class OneAtATime:
    """A Llama instance that records how many threads were inside it at once."""

    def __init__(self, llm: object) -> None:
        self.llm = llm
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> object:
        return getattr(self.llm, name)

    def _enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)

    def _leave(self) -> None:
        with self.lock:
            self.inside -= 1

    def create_chat_completion(self, **kwargs: object) -> object:
        self._enter()
        if not kwargs.get("stream"):
            try:
                time.sleep(0.3)  # widen the window a cancelled request leaves
                return self.llm.create_chat_completion(**kwargs)  # type: ignore[attr-defined]
            finally:
                self._leave()
        return self._streamed(self.llm.create_chat_completion(**kwargs))  # type: ignore[attr-defined]

    def _streamed(self, chunks: Iterator[object]) -> Iterator[object]:
        try:
            yield from chunks
        finally:
            self._leave()


def test_a_json_request_cancelled_mid_generation_keeps_the_model_until_its_thread_ends() -> None:
    """The brain's metadata request after a reply is cancelled when a newer message arrives;
    its thread goes on inside llama.cpp. Given back at the cancellation, the model served the
    next reply on a second thread at the same time: the brain segfaulted (the chaos soak)."""

    async def scenario() -> int:
        backend = LlamaCppBackend(LlamaCppConfig())
        await backend.start()
        guard = in_place(backend, OneAtATime(backend._models[0]))
        request = asyncio.ensure_future(
            backend.complete_json(
                [ChatTurn("user", "List three fruits.")],
                {"type": "object", "properties": {"fruits": {"type": "array"}}},
                Params(max_tokens=32, temperature=0.0, seed=0),
            )
        )
        await asyncio.sleep(0.1)  # its thread is inside the model
        await cancel_then_reply(backend, request)
        return guard.most

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == 1


class TokenCounting:
    """A Llama instance that counts the chunks its streamed completions yield."""

    def __init__(self, llm: object) -> None:
        self.llm = llm
        self.chunks = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.llm, name)

    def create_chat_completion(self, **kwargs: object) -> object:
        out = self.llm.create_chat_completion(**kwargs)  # type: ignore[attr-defined]
        if not kwargs.get("stream"):  # nothing could stop it: every token is drawn
            self.chunks += out["usage"]["completion_tokens"]
            return out
        return self._counted(out)

    def _counted(self, chunks: Iterator[object]) -> Iterator[object]:
        for chunk in chunks:
            self.chunks += 1
            yield chunk


def test_a_json_request_whose_caller_stops_waiting_stops_generating_and_frees_the_model() -> None:
    """Cancelled, a metadata request used to run in its thread up to max_tokens, holding the
    one model instance while the newer message's reply waited for it."""

    async def scenario() -> tuple[int, int]:
        backend = LlamaCppBackend(LlamaCppConfig())
        await backend.start()
        counting = in_place(backend, TokenCounting(backend._models[0]))
        max_tokens = 300
        long = {  # a grammar that cannot end before max_tokens
            "type": "object",
            "properties": {"story": {"type": "string", "minLength": 5000}},
            "required": ["story"],
        }
        request = asyncio.ensure_future(
            backend.complete_json(
                [ChatTurn("user", "Tell a very long story.")],
                long,
                Params(max_tokens=max_tokens, temperature=0.0, seed=0),
            )
        )
        while counting.chunks < 3:
            await asyncio.sleep(0.01)
        pieces = await cancel_then_reply(backend, request)
        return counting.chunks - pieces, max_tokens

    drawn, max_tokens = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert drawn < max_tokens // 2, drawn  # stopped a few tokens after the cancellation
