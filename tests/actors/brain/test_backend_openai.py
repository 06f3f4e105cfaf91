"""OpenAICompatBackend and FallbackChain against real servers.

Two kinds of server, both real sockets: ``llama_cpp.server`` serving
SmolLM2-135M (the happy path, JSON grammar, tokenizer, API key, SIGKILL), and a
scripted raw-HTTP/1.1 server on asyncio for the answers a healthy llama.cpp
never gives (429, 500, a stream cut short, a stream that hangs).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest

from actors.brain.backends.base import Backend, BackendError, BackendOverloaded, ChatTurn, Params
from actors.brain.backends.fallback import FallbackChain, FallbackEvent
from actors.brain.backends.openai_compat import OpenAICompatBackend, OpenAIConfig, OpenAIStream
from tests.support.brain import (
    KEY,
    KEY_ENV,
    MODEL,
    MODELS_OK,
    ScriptedServer,
    free_port,
    llama_server,
    sse,
    status,
)

pytestmark = pytest.mark.process

PARAMS = Params(max_tokens=32, temperature=0.0, seed=0)
STORY = [ChatTurn("user", "Tell me a long story about a cat who learns to sail.")]
HELLO = [ChatTurn("user", "Say hello to Hex.")]


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    saved = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = KEY
    try:
        with llama_server(tmp_path_factory.mktemp("llama") / "server.log") as (url, _):
            yield url
    finally:
        if saved is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = saved


def llama_backend(url: str, name: str = "llama", **overrides: object) -> OpenAICompatBackend:
    config = msgspec.structs.replace(
        OpenAIConfig(base_url=url, model=MODEL, api_key_env=KEY_ENV), **overrides
    )
    return OpenAICompatBackend(config, name=name)


async def collect(stream: OpenAIStream) -> list[str]:
    try:
        return [piece async for piece in stream]
    finally:
        await stream.aclose()


# --- OpenAICompatBackend on llama_cpp.server


@pytest.mark.slow
def test_stream_yields_pieces_and_fills_usage(llama_url: str) -> None:
    async def scenario() -> None:
        backend = llama_backend(llama_url)
        try:
            await backend.start()
            stream = backend.stream(HELLO, PARAMS)
            pieces = await collect(stream)
        finally:
            await backend.close()
        assert len(pieces) >= 3, pieces
        assert "".join(pieces).strip()
        # llama_cpp.server sends no usage in streams: the backend counts.
        assert stream.usage.completion_tokens == len(pieces)
        assert stream.usage.prompt_tokens > 0
        assert 0 < stream.usage.time_to_first_token_s <= stream.usage.seconds

    asyncio.run(scenario())


class Mood(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(max_length=12)]
    mood: Literal["happy", "sad", "sleepy"]
    awake: bool


@pytest.mark.slow
def test_complete_json_matches_the_schema(llama_url: str) -> None:
    async def scenario() -> str:
        backend = llama_backend(llama_url)
        try:
            turns = [
                ChatTurn("user", "Describe a cat's name, mood and whether it is awake, as JSON.")
            ]
            return await backend.complete_json(turns, msgspec.json.schema(Mood), PARAMS)
        finally:
            await backend.close()

    mood = msgspec.json.decode(asyncio.run(scenario()), type=Mood)
    assert mood.mood in ("happy", "sad", "sleepy")


@pytest.mark.slow
def test_count_tokens_exact_asks_the_server_tokenizer(llama_url: str) -> None:
    async def scenario() -> tuple[int, int]:
        backend = llama_backend(llama_url, tokenizer="server")
        try:
            return await backend.count_tokens_exact("hello world"), backend.count_tokens(
                "hello world"
            )
        finally:
            await backend.close()

    assert asyncio.run(scenario()) == (2, 3)  # SmolLM2 splits "hello| world"; ceil(11 / 4) = 3


@pytest.mark.slow
def test_wrong_api_key_is_an_error_naming_the_variable(
    llama_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEX_TEST_WRONG_KEY", "not-the-key")

    async def scenario() -> tuple[str, str]:
        backend = llama_backend(llama_url, api_key_env="HEX_TEST_WRONG_KEY")
        try:
            with pytest.raises(BackendError) as at_start:
                await backend.start()
            with pytest.raises(BackendError) as at_stream:
                await collect(backend.stream(HELLO, PARAMS))
            return str(at_start.value), str(at_stream.value)
        finally:
            await backend.close()

    for message in asyncio.run(scenario()):
        assert "401" in message and "HEX_TEST_WRONG_KEY" in message
        assert "not-the-key" not in message and "\n" not in message


def test_unset_api_key_variable_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEX_TEST_NO_SUCH_KEY", raising=False)
    backend = OpenAICompatBackend(
        OpenAIConfig(
            base_url="http://127.0.0.1:9/v1", model="m", api_key_env="HEX_TEST_NO_SUCH_KEY"
        )
    )

    async def scenario() -> None:
        try:
            await backend.start()
        finally:
            await backend.close()

    with pytest.raises(BackendError, match="HEX_TEST_NO_SUCH_KEY"):
        asyncio.run(scenario())


# --- OpenAICompatBackend on the scripted server


def test_429_is_overloaded_with_retry_after() -> None:
    async def scenario() -> None:
        body = b'{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}'
        async with ScriptedServer(status(429, body, {"Retry-After": "7"})) as server:
            backend = server.backend("remote")
            try:
                with pytest.raises(BackendOverloaded) as caught:
                    await collect(backend.stream(HELLO, PARAMS))
            finally:
                await backend.close()
            assert caught.value.retry_after_s == 7
            assert len(server.requests) == 1  # the chain decides what to do, not a blind retry

    asyncio.run(scenario())


def test_500_twice_then_a_stream_succeeds_by_retrying() -> None:
    async def scenario() -> None:
        async with ScriptedServer(status(500), status(500), sse(["Hel", "lo", "!"])) as server:
            backend = server.backend("remote")
            try:
                stream = backend.stream(HELLO, PARAMS)
                assert await collect(stream) == ["Hel", "lo", "!"]
            finally:
                await backend.close()
            assert len(server.requests) == 3
            assert stream.usage.prompt_tokens == 11 and stream.usage.completion_tokens == 3
            sent = msgspec.json.decode(server.requests[0][1])
            assert server.requests[0][0] == "/v1/chat/completions"
            assert sent["stream"] is True and sent["messages"] == [
                {"role": "user", "content": "Say hello to Hex."}
            ]

    asyncio.run(scenario())


def test_stream_cut_after_tokens_is_an_error_without_retry() -> None:
    async def scenario() -> None:
        async with ScriptedServer(sse(["Once", " upon"], then="cut")) as server:
            backend = server.backend("remote")
            got: list[str] = []
            try:
                stream = backend.stream(STORY, PARAMS)
                with pytest.raises(BackendError):
                    async for piece in stream:
                        got.append(piece)
                await stream.aclose()
            finally:
                await backend.close()
            assert got == ["Once", " upon"]
            assert len(server.requests) == 1  # a retry would repeat text the caller already has

    asyncio.run(scenario())


def test_unreachable_server_is_an_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"

    async def scenario() -> None:
        backend = OpenAICompatBackend(OpenAIConfig(base_url=url, model="m", backoff_s=0.01))
        try:
            with pytest.raises(BackendError, match=f"{url}/models") as caught:
                await backend.start()
            assert "\n" not in str(caught.value) and "base_url" in str(caught.value)
            with pytest.raises(BackendError, match=url):
                await collect(backend.stream(HELLO, PARAMS))
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_aclose_from_another_task_ends_a_hanging_stream_at_once() -> None:
    async def scenario() -> None:
        async with ScriptedServer(sse(["Hmm"], then="hang")) as server:
            backend = server.backend("remote")
            try:
                stream = backend.stream(HELLO, PARAMS)
                first = asyncio.Event()
                got: list[str] = []

                async def consume() -> None:
                    async for piece in stream:
                        got.append(piece)
                        first.set()

                consumer = asyncio.create_task(consume())
                await asyncio.wait_for(first.wait(), 5)
                started = time.monotonic()
                await stream.aclose()
                await asyncio.wait_for(consumer, 1)
                assert time.monotonic() - started < 0.5
                assert got == ["Hmm"]
                deadline = time.monotonic() + 2
                while server.hangups == 0 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert server.hangups == 1  # the HTTP connection itself was closed
            finally:
                await backend.close()

    asyncio.run(scenario())


# --- FallbackChain


@pytest.mark.slow
def test_chain_restarts_on_llama_when_the_first_dies_mid_stream(llama_url: str) -> None:
    events: list[FallbackEvent] = []
    text: list[str] = []

    def on_fallback(event: FallbackEvent) -> None:
        events.append(event)
        if event.partial:
            text.clear()  # the consumer's side of the restart contract

    async def scenario() -> None:
        async with ScriptedServer(MODELS_OK, sse(["Once", " upon"], then="cut")) as server:
            chain = FallbackChain(
                [server.backend("broken"), llama_backend(llama_url)], on_fallback=on_fallback
            )
            try:
                await chain.start()
                stream = chain.stream(STORY, PARAMS)
                async for piece in stream:
                    text.append(piece)
                await stream.aclose()
            finally:
                await chain.close()
            assert stream.backend == "llama" and stream.fell_back and stream.restarts == 1
            assert "".join(text) == stream.text and stream.text.strip()
            assert stream.usage.completion_tokens > 0
            totals = chain.usage_by_backend
            assert (totals["broken"].requests, totals["broken"].failures) == (1, 1)
            assert (totals["llama"].requests, totals["llama"].failures) == (1, 0)
            assert totals["llama"].completion_tokens == stream.usage.completion_tokens
            assert chain.healthy() == ["llama"]

    asyncio.run(scenario())
    assert [(e.from_name, e.to_name, e.overloaded, e.partial) for e in events] == [
        ("broken", "llama", False, True)
    ]


@pytest.mark.slow
def test_chain_completes_on_the_next_server_when_llama_is_killed_mid_stream(
    llama_url: str, tmp_path: Path
) -> None:
    events: list[FallbackEvent] = []

    with llama_server(tmp_path / "doomed.log") as (doomed_url, doomed):

        async def scenario() -> None:
            chain = FallbackChain(
                [llama_backend(doomed_url, name="doomed"), llama_backend(llama_url, name="steady")],
                on_fallback=events.append,
            )
            try:
                await chain.start()
                stream = chain.stream(STORY, PARAMS)
                async for _ in stream:
                    if stream.backend == "doomed" and doomed.poll() is None:
                        doomed.send_signal(signal.SIGKILL)
                        doomed.wait()
                await stream.aclose()
            finally:
                await chain.close()
            assert stream.backend == "steady" and stream.text.strip()

        asyncio.run(scenario())

    assert [(e.from_name, e.to_name, e.partial) for e in events] == [("doomed", "steady", True)]


def test_chain_skips_an_overloaded_backend_for_its_retry_after() -> None:
    now = [1000.0]
    events: list[FallbackEvent] = []

    async def scenario() -> None:
        async with (
            ScriptedServer(MODELS_OK, status(429, b"{}", {"Retry-After": "7"})) as busy,
            ScriptedServer(MODELS_OK, sse(["zzz"])) as spare,
        ):
            chain = FallbackChain(
                [busy.backend("busy"), spare.backend("spare")],
                on_fallback=events.append,
                clock=lambda: now[0],
            )
            try:
                await chain.start()

                async def reply() -> tuple[str, str]:
                    stream = chain.stream(HELLO, PARAMS)
                    async for _ in stream:
                        pass
                    return stream.backend, stream.text

                assert await reply() == ("spare", "zzz")
                assert len(busy.requests) == 2  # GET /models at start, then the 429
                now[0] += 6
                assert await reply() == ("spare", "zzz")
                assert len(busy.requests) == 2  # still cooling down: not asked
                assert chain.count_tokens("abcdefgh") == 2
                now[0] += 2
                assert await reply() == ("spare", "zzz")
                assert len(busy.requests) == 3  # retry_after passed: asked again
            finally:
                await chain.close()

    asyncio.run(scenario())
    assert [(e.from_name, e.to_name, e.overloaded, e.partial) for e in events] == [
        ("busy", "spare", True, False)
    ] * 2


def test_chain_starts_without_a_dead_backend_and_raises_overloaded_when_all_are() -> None:
    async def scenario() -> None:
        dead = OpenAICompatBackend(
            OpenAIConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m"), name="dead"
        )
        async with ScriptedServer(MODELS_OK, status(429, b"{}", {"Retry-After": "3"})) as busy:
            chain = FallbackChain([dead, busy.backend("busy")], cooldown_s=30)
            try:
                await chain.start()
                assert chain.healthy() == ["busy"]
                with pytest.raises(BackendOverloaded) as caught:
                    await chain.complete_json(HELLO, {"type": "object"}, PARAMS)
                assert caught.value.retry_after_s == 3
                with pytest.raises(BackendError, match="every LLM backend failed"):
                    async for _ in chain.stream(HELLO, PARAMS):
                        pass
            finally:
                await chain.close()

    asyncio.run(scenario())


@pytest.mark.slow
def test_chain_complete_json_falls_back_to_llama(llama_url: str) -> None:
    async def scenario() -> None:
        async with ScriptedServer(MODELS_OK, status(503)) as broken:
            chain = FallbackChain(
                [broken.backend("broken", max_retries=0), llama_backend(llama_url)]
            )
            try:
                await chain.start()
                turns = [
                    ChatTurn(
                        "user", "Describe a cat's name, mood and whether it is awake, as JSON."
                    )
                ]
                raw = await chain.complete_json(turns, msgspec.json.schema(Mood), PARAMS)
            finally:
                await chain.close()
            msgspec.json.decode(raw, type=Mood)
            assert chain.usage_by_backend["broken"].failures == 1
            assert chain.usage_by_backend["llama"].requests == 1

    asyncio.run(scenario())


def test_backends_satisfy_the_protocol() -> None:
    backend = OpenAICompatBackend(OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m"))
    chain: Backend = FallbackChain([backend])  # mypy checks the protocol statically here
    assert isinstance(backend, Backend) and isinstance(chain, Backend)
