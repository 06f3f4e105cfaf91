"""A backend for any OpenAI-compatible HTTP server: Ollama, vLLM, OpenRouter, DeepSeek, llama.cpp.

Streaming uses ``POST {base_url}/chat/completions`` with ``stream: true`` and reads
the server-sent events. Connect errors and 5xx answers are retried with
exponential backoff only until the first token arrives; once text has streamed,
a failure is a :class:`BackendError` and the caller falls back. HTTP 429 (and
quota errors) are :class:`BackendOverloaded` carrying ``Retry-After``.

The API key is read from the environment variable named by ``api_key_env`` at
each request; it is never stored in the config and never logged.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import msgspec
import structlog

from actors.brain.backends._openai_wire import (
    CHUNK,
    COMPLETION,
    ENCODER,
    ERROR,
    TOKENS,
    ChatRequest,
    ErrorBody,
    RateLimits,
    error_text,
    one_line,
    rate_limits,
    retry_after,
)
from actors.brain.backends.base import (
    BackendError,
    BackendOverloaded,
    ChatTurn,
    Params,
    Usage,
)
from hexbus.config import is_loopback

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the OpenAI-compatible backend needs httpx: pip install 'httpx>=0.27'"
    ) from exc

log = structlog.get_logger("actors.brain.openai")

CHARS_PER_TOKEN: Final = 4
"""English text runs about four characters a token in BPE tokenizers; the approximate count rounds up."""


class OpenAIConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where the server is and how patient to be with it.

    ``tokenizer``: ``"approx"`` counts ``ceil(len(text) / 4)`` everywhere;
    ``"server"`` makes :meth:`OpenAICompatBackend.count_tokens_exact` ask the
    server's ``/tokenize`` (llama.cpp) or ``/extras/tokenize`` (llama-cpp-python).
    """

    base_url: str
    model: str
    api_key_env: str = ""
    timeout_s: float = 30
    connect_timeout_s: float = 3
    max_retries: int = 2
    backoff_s: float = 0.5
    capacity: int = 4
    tokenizer: Literal["approx", "server"] = "approx"
    # Costs money (the owner's ``paid_backend`` switch decides whether it is used); None: paid
    # unless base_url is on this machine.
    paid: bool | None = None


class _Retryable(BackendError):
    """A failure worth another try while nothing has streamed yet (connect error, 5xx)."""


def approx_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: close for English, low for code and CJK; never 0 for non-empty text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class OpenAICompatBackend:
    """A :class:`~actors.brain.backends.base.Backend` over an OpenAI-compatible ``/v1`` endpoint.

    One ``httpx.AsyncClient`` per backend, made on first use and closed by
    :meth:`close`. ``count_tokens`` is the approximate count (sync, no I/O);
    :meth:`count_tokens_exact` asks the server when ``tokenizer = "server"``.
    """

    def __init__(self, config: OpenAIConfig, name: str | None = None) -> None:
        self.config = config
        host = urlsplit(config.base_url).hostname or ""
        self.paid = config.paid if config.paid is not None else not is_loopback(host)
        self.name = name or f"openai:{config.model}"
        self.capacity = config.capacity
        self.base_url = config.base_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        # None: not probed yet; "": the server has no tokenize endpoint.
        self._tokenize_path: str | None = None
        self.limits: RateLimits | None = None  # what the provider last said of its limits

    # --- lifecycle

    async def start(self) -> None:
        """Check the endpoint answers ``GET /models`` within the connect timeout."""
        url = f"{self.base_url}/models"
        headers = self._headers()
        try:
            response = await self.client().get(
                url, headers=headers, timeout=self.config.connect_timeout_s
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                f"{self.name}: cannot reach {url} ({type(exc).__name__}: {one_line(str(exc), 80)}); "
                "start the server or fix base_url in the brain config"
            ) from exc
        if response.status_code != 200:
            raise self._status_error(response, url)
        log.info("brain.backend.ready", backend=self.name, base_url=self.base_url)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)
            self._client = httpx.AsyncClient(timeout=timeout)
        return self._client

    # --- generation

    def stream(self, turns: list[ChatTurn], params: Params) -> OpenAIStream:
        """Start generating when first iterated; see :class:`OpenAIStream`."""
        request = self._request(turns, params, stream=True)
        return OpenAIStream(
            self, request, prompt_tokens=sum(approx_tokens(t.content) for t in turns)
        )

    async def complete_json(
        self, turns: list[ChatTurn], schema: dict[str, Any], params: Params
    ) -> str:
        """One non-streamed completion with ``response_format = {"type": "json_object", "schema": ...}``.

        llama.cpp's servers turn that schema into a grammar, so the answer parses;
        servers that ignore ``schema`` still return a JSON object.
        """
        request = self._request(turns, params, stream=False)
        request.response_format = {"type": "json_object", "schema": schema}
        url = f"{self.base_url}/chat/completions"
        body = ENCODER.encode(request)
        last: BackendError | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.config.backoff_s * 2 ** (attempt - 1))
            try:
                response = await self.client().post(url, content=body, headers=self._headers())
            except httpx.HTTPError as exc:
                last = self._transport_error(exc, url)
                continue
            self.saw_limits(response.headers)
            if response.status_code != 200:
                error = self._status_error(response, url)
                if isinstance(error, _Retryable):
                    last = error
                    continue
                raise error
            try:
                completion = COMPLETION.decode(response.content)
            except msgspec.DecodeError as exc:
                raise BackendError(f"{self.name}: malformed JSON from {url}: {exc}") from exc
            if completion.error is not None:
                raise self._body_error(completion.error)
            if not completion.choices or completion.choices[0].message.content is None:
                raise BackendError(f"{self.name}: {url} answered with no message content")
            return completion.choices[0].message.content
        assert last is not None  # the loop ran at least once and only continues on an error
        raise BackendError(f"{last} (gave up after {self.config.max_retries + 1} tries)")

    def count_tokens(self, text: str) -> int:
        """Approximate: ``ceil(len(text) / 4)``, since this must not block on the network."""
        return approx_tokens(text)

    async def count_tokens_exact(self, text: str) -> int:
        """The server's own count when ``tokenizer = "server"`` and it offers one; else the approximate count."""
        if self.config.tokenizer != "server" or self._tokenize_path == "":
            return approx_tokens(text)
        root = self.base_url.removesuffix("/v1")
        # llama.cpp's server, then llama-cpp-python's; each names its text field differently.
        candidates = [("/tokenize", "content"), ("/extras/tokenize", "input")]
        if self._tokenize_path:
            candidates = [c for c in candidates if c[0] == self._tokenize_path]
        for path, field in candidates:
            try:
                response = await self.client().post(
                    root + path,
                    content=ENCODER.encode({field: text, "model": self.config.model}),
                    headers=self._headers(),
                )
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, root + path) from exc
            if response.status_code == 200:
                try:
                    tokens = TOKENS.decode(response.content).tokens
                except msgspec.DecodeError:
                    continue
                self._tokenize_path = path
                return len(tokens)
        log.info("brain.backend.no_tokenizer", backend=self.name, fallback="approx")
        self._tokenize_path = ""
        return approx_tokens(text)

    # --- helpers the stream shares

    def _request(self, turns: list[ChatTurn], params: Params, *, stream: bool) -> ChatRequest:
        return ChatRequest(
            model=self.config.model,
            messages=list(turns),
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stream=stream,
            stream_options={"include_usage": True} if stream else None,
            stop=list(params.stop) or None,
            seed=params.seed,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if env := self.config.api_key_env:
            key = os.environ.get(env)
            if not key:
                raise BackendError(
                    f"{self.name}: environment variable {env} is empty; export the API key for {self.base_url} in it"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def saw_limits(self, headers: Mapping[str, str]) -> None:
        """Keep what the provider said of its limits (the page's and /metrics' sleepy state)."""
        found = rate_limits(headers)
        if found is not None:
            self.limits = found

    def _transport_error(self, exc: httpx.HTTPError, url: str) -> _Retryable:
        return _Retryable(
            f"{self.name}: {url} failed ({type(exc).__name__}: {one_line(str(exc), 120)})"
        )

    def _status_error(self, response: httpx.Response, url: str) -> BackendError:
        """Map a non-200 answer (body already read) to the error the caller acts on."""
        status = response.status_code
        try:
            envelope = ERROR.decode(response.content)
            message, quota = error_text(envelope.error)
            message = message or (str(envelope.detail) if envelope.detail is not None else "")
        except msgspec.DecodeError:
            message, quota = response.text, False
        message = one_line(message) or response.reason_phrase
        if status in (401, 403):
            fix = (
                f"check the key in ${self.config.api_key_env}"
                if self.config.api_key_env
                else "set api_key_env in the brain config to the variable holding the key"
            )
            return BackendError(f"{self.name}: {url} refused the API key (HTTP {status}): {fix}")
        if status in (402, 429) or quota:
            retry = retry_after(response.headers)
            return BackendOverloaded(
                f"{self.name}: {url} is rate-limited or out of quota (HTTP {status}): {message}",
                retry_after_s=retry,
            )
        if status >= 500:
            return _Retryable(f"{self.name}: {url} failed (HTTP {status}): {message}")
        return BackendError(f"{self.name}: {url} rejected the request (HTTP {status}): {message}")

    def _body_error(self, error: ErrorBody | str) -> BackendError:
        message, quota = error_text(error)
        if quota:
            return BackendOverloaded(f"{self.name}: out of quota: {one_line(message)}")
        return BackendError(f"{self.name}: server error: {one_line(message)}")


class OpenAIStream:
    """Text pieces of one streamed completion; ``usage`` is complete once iteration ends.

    The consumer reads the HTTP stream in its own task: nothing runs in the
    background. :meth:`aclose` may still come from any task. From the consumer's
    task it closes the pieces' generator, and with it the connection; from another
    task, while the consumer waits for the next piece, it cancels that wait, which
    closes the connection at once, and the consumer's loop ends as if the stream
    had finished. A consumer that stops early calls :meth:`aclose`.
    """

    def __init__(
        self, backend: OpenAICompatBackend, request: ChatRequest, prompt_tokens: int
    ) -> None:
        self.backend = backend
        self.usage = Usage(prompt_tokens=prompt_tokens)
        self.pieces = 0
        self._request = request
        self._gen: AsyncGenerator[str, None] | None = None
        self._reader: asyncio.Task[Any] | None = None  # the task waiting in __anext__
        self._idle = asyncio.Event()  # set while no task waits in __anext__
        self._idle.set()
        self._interrupted = False  # aclose() from another task cancelled the reader's wait
        self._t0 = 0.0
        self._closed = False

    def __aiter__(self) -> OpenAIStream:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            raise StopAsyncIteration
        if self._gen is None:
            self._gen = self._pieces()
        reader = self._reader = asyncio.current_task()
        self._idle.clear()
        try:
            return await anext(self._gen)
        except asyncio.CancelledError:
            if not self._interrupted or reader is None:
                raise
            self._interrupted = False
            if reader.uncancel() > 0:
                raise  # somebody else cancelled the consumer as well: that cancellation stands
            raise StopAsyncIteration from None
        finally:
            self._reader = None
            self._idle.set()

    async def aclose(self) -> None:
        self._closed = True
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            self._interrupted = True
            reader.cancel()
            await self._idle.wait()  # the connection is closed once the reader has left
        elif self._gen is not None:
            await self._gen.aclose()

    async def _pieces(self) -> AsyncGenerator[str, None]:
        backend = self.backend
        retries = backend.config.max_retries
        last: BackendError | None = None
        self._t0 = time.monotonic()
        try:
            for attempt in range(retries + 1):
                if attempt:
                    delay = backend.config.backoff_s * 2 ** (attempt - 1)
                    log.info(
                        "brain.backend.retry",
                        backend=backend.name,
                        attempt=attempt,
                        delay_s=delay,
                        error=str(last),
                    )
                    await asyncio.sleep(delay)
                try:
                    async with aclosing(self._attempt()) as pieces:
                        async for piece in pieces:
                            yield piece
                    return
                except _Retryable as exc:
                    if self.pieces:
                        # Text has reached the caller: a silent retry would repeat it.
                        raise BackendError(f"{exc} after {self.pieces} pieces") from exc
                    last = exc
            assert last is not None  # the loop ran at least once and only continues on an error
            raise BackendError(f"{last} (gave up after {retries + 1} tries)")
        finally:
            self.usage.seconds = time.monotonic() - self._t0

    async def _attempt(self) -> AsyncGenerator[str, None]:
        backend = self.backend
        url = f"{backend.base_url}/chat/completions"
        headers = backend._headers() | {"Accept": "text/event-stream"}
        finished = False
        try:
            async with backend.client().stream(
                "POST", url, content=ENCODER.encode(self._request), headers=headers
            ) as response:
                backend.saw_limits(response.headers)
                if response.status_code != 200:
                    await response.aread()
                    raise backend._status_error(response, url)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    pieces, done = self._take(data)
                    finished = done or finished
                    for piece in pieces:
                        yield piece
        except httpx.HTTPError as exc:
            raise backend._transport_error(exc, url) from exc
        if not finished:
            raise _Retryable(f"{backend.name}: {url} closed the stream before it finished")

    def _take(self, data: str) -> tuple[list[str], bool]:
        """One event's text pieces, and whether it carried a finish reason."""
        try:
            chunk = CHUNK.decode(data)
        except msgspec.DecodeError as exc:
            raise _Retryable(
                f"{self.backend.name}: malformed stream event: {one_line(data, 80)}"
            ) from exc
        if chunk.error is not None:
            raise self.backend._body_error(chunk.error)
        finished = False
        pieces: list[str] = []
        for choice in chunk.choices:
            if content := choice.delta.content:
                if not self.pieces:
                    self.usage.time_to_first_token_s = time.monotonic() - self._t0
                self.pieces += 1
                # Servers that send no usage stream one token per delta in practice.
                self.usage.completion_tokens = self.pieces
                pieces.append(content)
            finished = finished or choice.finish_reason is not None
            if choice.finish_reason == "length":
                self.usage.truncated = True
        if chunk.usage is not None:
            self.usage.prompt_tokens = chunk.usage.prompt_tokens
            self.usage.completion_tokens = chunk.usage.completion_tokens
        return pieces, finished
