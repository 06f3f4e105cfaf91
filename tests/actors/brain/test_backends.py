"""Backends that cannot run here stay importable and step aside; the packaged model streams and stops."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors.brain.backends import ChatTurn, Params
from actors.brain.backends.exllamav2 import ExLlamaV2Backend, ExLlamaV2Config
from actors.brain.backends.fallback import FallbackChain
from actors.brain.backends.llamacpp import Instance, LlamaCppBackend, LlamaCppConfig
from hexbus.models import ModelMissing
from tests.support.harness import REPO

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


def in_place(backend: LlamaCppBackend, wrap: Callable[[Any], object]) -> None:
    """``wrap`` goes around both contexts of the backend's one model instance."""
    (instance,) = backend._instances
    pair = Instance(wrap(instance.chat), wrap(instance.side))
    backend._instances = [pair]
    backend._free = asyncio.Queue()
    backend._free.put_nowait(pair)


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


class Inside:
    """How many threads were inside an instance's contexts at once, at most."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()


class OneAtATime:
    """A llama.cpp context that records in ``tally`` how many threads were inside its instance
    (either of its two contexts) at once."""

    def __init__(self, llm: object, tally: Inside) -> None:
        self.llm = llm
        self.tally = tally

    def __getattr__(self, name: str) -> object:
        return getattr(self.llm, name)

    def _enter(self) -> None:
        t = self.tally
        with t.lock:
            t.inside += 1
            t.most = max(t.most, t.inside)

    def _leave(self) -> None:
        t = self.tally
        with t.lock:
            t.inside -= 1

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
        tally = Inside()
        in_place(backend, lambda llm: OneAtATime(llm, tally))
        request = asyncio.ensure_future(
            backend.complete_json(
                [ChatTurn("user", "List three fruits.")],
                {"type": "object", "properties": {"fruits": {"type": "array"}}},
                Params(max_tokens=32, temperature=0.0, seed=0),
            )
        )
        await asyncio.sleep(0.1)  # its thread is inside the model
        await cancel_then_reply(backend, request)
        return tally.most

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == 1


class Chunks:
    """How many chunks an instance's contexts have yielded."""

    def __init__(self) -> None:
        self.chunks = 0


class TokenCounting:
    """A llama.cpp context that counts in ``tally`` the chunks its completions yield."""

    def __init__(self, llm: object, tally: Chunks) -> None:
        self.llm = llm
        self.tally = tally

    def __getattr__(self, name: str) -> object:
        return getattr(self.llm, name)

    def create_chat_completion(self, **kwargs: object) -> object:
        out = self.llm.create_chat_completion(**kwargs)  # type: ignore[attr-defined]
        if not kwargs.get("stream"):  # nothing could stop it: every token is drawn
            self.tally.chunks += out["usage"]["completion_tokens"]
            return out
        return self._counted(out)

    def _counted(self, chunks: Iterator[object]) -> Iterator[object]:
        for chunk in chunks:
            self.tally.chunks += 1
            yield chunk


def test_a_json_request_whose_caller_stops_waiting_stops_generating_and_frees_the_model() -> None:
    """Cancelled, a metadata request used to run in its thread up to max_tokens, holding the
    one model instance while the newer message's reply waited for it."""

    async def scenario() -> tuple[int, int]:
        backend = LlamaCppBackend(LlamaCppConfig())
        await backend.start()
        counting = Chunks()
        in_place(backend, lambda llm: TokenCounting(llm, counting))
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


def test_a_conversations_prompt_is_evaluated_once_though_metadata_runs_between_replies() -> None:
    """llama.cpp evaluates only what follows the longest prefix its context holds. The metadata
    request after each reply used to run in the reply's context, so every next reply evaluated
    the whole persona again (2.5 s for 700 tokens on two cores)."""
    persona = (REPO / "persona.toml").read_text()[:2400]
    first = [ChatTurn("system", persona), ChatTurn("user", "Hi! I grow tomatoes.")]
    meta = [ChatTurn("system", "Describe as JSON."), ChatTurn("user", "User: Hi!")]
    schema = {"type": "object", "properties": {"mood": {"type": "string", "maxLength": 10}}}

    async def scenario() -> tuple[int, int]:
        backend = LlamaCppBackend(LlamaCppConfig())
        await backend.start()
        evaluated: list[int] = []
        (instance,) = backend._instances

        def counted(real: Callable[[Any], None]) -> Callable[[Any], None]:
            def evaluate(tokens: Any) -> None:
                evaluated.append(len(tokens))
                real(tokens)

            return evaluate

        for llm in (instance.chat, instance.side):
            llm.eval = counted(llm.eval)  # what llama.cpp evaluates, prompt and tokens drawn
        params = Params(max_tokens=8, temperature=0.0, seed=0)
        said = "".join([p async for p in backend.stream(first, params)])
        await backend.complete_json(meta, schema, params)
        evaluated.clear()
        second = [*first, ChatTurn("assistant", said), ChatTurn("user", "Do you like them?")]
        [p async for p in backend.stream(second, params)]
        prompt = sum(backend.count_tokens(t.content) for t in second)
        await backend.close()
        return sum(evaluated), prompt

    evaluated, prompt = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert evaluated < prompt // 4, (evaluated, prompt)
