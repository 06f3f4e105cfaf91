"""exllamav2: EXL2-quantised models on an NVIDIA GPU (the workstation's fast path).

CUDA-only: it cannot run on the CPU machines Hex is developed and tested on, so
this module is written against the same interface as the llama.cpp backend,
imports exllamav2 only in ``start()``, and is exercised only where a GPU and the
``[gpu]`` extra are present. Without them, ``start()`` raises
:class:`hexbus.models.ModelMissing` with the install hint and the fallback chain
moves on to the next backend.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from actors.brain.backends._threaded import ThreadStream
from actors.brain.backends.base import (
    BackendError,
    ChatTurn,
    ModelLoader,
    Params,
    Usage,
    load_in_thread,
)
from hexbus.models import LazyModel, ModelMissing

INSTALL_HINT = "pip install exllamav2 (CUDA build) on a machine with an NVIDIA GPU; see README, 'Brain backends'"


class ExLlamaV2Config(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="exllamav2"
):
    name: str = "exllamav2"
    model_dir: str  # an EXL2 model folder (config.json, *.safetensors, tokenizer)
    max_seq_len: int = 8192
    cache_quant: str = "Q4"  # "FP16", "Q8", "Q6" or "Q4"
    capacity: int = 4  # concurrent jobs in the dynamic generator


def _chatml(turns: list[ChatTurn]) -> str:
    """The Llama 3 chat template, the family the workstation runs."""
    parts = ["<|begin_of_text|>"]
    for t in turns:
        parts.append(f"<|start_header_id|>{t.role}<|end_header_id|>\n\n{t.content}<|eot_id|>")
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


class ExLlamaV2Backend:
    def __init__(self, config: ExLlamaV2Config, load: ModelLoader = load_in_thread) -> None:
        self.config = config
        self._load = load
        self.name = config.name
        self.capacity = max(1, config.capacity)
        self._generator: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()  # the dynamic generator is driven from one thread at a time
        self._results: dict[int, list[dict[str, Any]]] = {}

    async def start(self) -> None:
        try:
            from exllamav2 import (
                ExLlamaV2,
                ExLlamaV2Cache_Q4,
                ExLlamaV2Cache_Q6,
                ExLlamaV2Cache_Q8,
                ExLlamaV2Tokenizer,
            )
            from exllamav2 import (
                ExLlamaV2Config as ModelConfig,
            )
            from exllamav2.generator import ExLlamaV2DynamicGenerator
        except ImportError:
            raise ModelMissing(f"exllamav2 is not installed: {INSTALL_HINT}") from None
        folder = Path(self.config.model_dir).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelMissing(
                f"EXL2 model folder {folder} has no config.json: set model_dir to a downloaded EXL2 model"
            )
        caches = {"Q4": ExLlamaV2Cache_Q4, "Q6": ExLlamaV2Cache_Q6, "Q8": ExLlamaV2Cache_Q8}

        def load() -> tuple[Any, Any]:
            config = ModelConfig(str(folder))
            config.max_seq_len = self.config.max_seq_len
            model = ExLlamaV2(config)
            cache = caches.get(self.config.cache_quant, ExLlamaV2Cache_Q4)(model, lazy=True)
            model.load_autosplit(cache)
            tokenizer = ExLlamaV2Tokenizer(config)
            generator = ExLlamaV2DynamicGenerator(
                model=model, cache=cache, tokenizer=tokenizer, max_batch_size=self.capacity
            )
            return tokenizer, generator

        try:
            self._tokenizer, self._generator = await self._load(LazyModel(folder.name, load))
        except Exception as exc:
            raise BackendError(f"exllamav2 could not load {folder}: {exc}") from exc

    def _generate(
        self, turns: list[ChatTurn], params: Params, usage: Usage, stop: threading.Event
    ) -> Any:
        from exllamav2.generator import ExLlamaV2DynamicJob, ExLlamaV2Sampler

        settings = ExLlamaV2Sampler.Settings(temperature=params.temperature, top_p=params.top_p)
        ids = self._tokenizer.encode(_chatml(turns), encode_special_tokens=True)
        usage.prompt_tokens = int(ids.shape[-1])
        job = ExLlamaV2DynamicJob(
            input_ids=ids,
            max_new_tokens=params.max_tokens,
            gen_settings=settings,
            stop_conditions=[self._tokenizer.eos_token_id, *params.stop],
            seed=params.seed,
        )
        with self._lock:
            self._generator.enqueue(job)
            self._results[id(job)] = []
        finished = False
        try:
            while not stop.is_set():
                # One generator serves every job: whoever iterates hands each result to its job's list.
                with self._lock:
                    for result in self._generator.iterate():
                        self._results.setdefault(id(result["job"]), []).append(result)
                    mine, self._results[id(job)] = self._results[id(job)], []
                for result in mine:
                    text = result.get("text", "")
                    if text:
                        usage.completion_tokens += 1
                        yield text
                    if result.get("eos"):
                        finished = True
                        return
                if not mine:
                    time.sleep(0.001)
        finally:
            # Stopped, or closed at a yield (the consumer went away): the job must leave the
            # generator's batch, or it keeps generating for nobody.
            with self._lock:
                if not finished:
                    self._generator.cancel(job)
                self._results.pop(id(job), None)

    def stream(self, turns: list[ChatTurn], params: Params) -> ThreadStream:
        if self._generator is None:
            raise BackendError("exllamav2 backend used before start()")
        return ThreadStream(
            "exllamav2", lambda _, usage, stop: self._generate(turns, params, usage, stop)
        )

    async def complete_json(
        self, turns: list[ChatTurn], schema: dict[str, Any], params: Params
    ) -> str:
        # No grammar here without extra packages: the caller's lenient parser repairs or drops the result.
        pieces = [p async for p in self.stream(turns, params)]
        return "".join(pieces)

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            return (len(text) + 3) // 4
        return int(self._tokenizer.encode(text).shape[-1])

    async def close(self) -> None:
        self._generator = None
