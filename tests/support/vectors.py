"""Vector index test helpers: unit vectors shaped like embeddings, their size, rebuild log lines."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
DIM = 32


def unit(v: npt.NDArray[np.floating[Any]]) -> Array:
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def embedding_like(n: int, dim: int = 384, seed: int = 0) -> Array:
    """Unit vectors near a 32-dimensional subspace, like sentence embeddings (uniform noise has no neighbours)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((32, dim)) / np.sqrt(32)
    return unit(rng.standard_normal((n, 32)) @ basis + 0.3 * rng.standard_normal((n, dim)))


def rebuilds(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "vectors.rebuild"]
