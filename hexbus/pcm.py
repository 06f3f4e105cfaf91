"""PCM16 ↔ float conversion, the one place audio crosses between the bus and numpy.

Every audio blob on the bus is little-endian signed 16-bit PCM; every model takes float32 in
[-1, 1]. Conversion clips, rounds to nearest, and ignores a trailing odd byte.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["from_pcm16", "to_pcm16"]


def to_pcm16(samples: npt.ArrayLike) -> bytes:
    """Float samples (any shape; interleaved if multi-channel) as little-endian int16 PCM."""
    scaled = np.rint(np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0)
    return bytes(scaled.astype("<i2").tobytes())


def from_pcm16(blob: bytes) -> npt.NDArray[np.float32]:
    """Little-endian int16 PCM as float32 samples in [-1, 1)."""
    return np.frombuffer(blob[: len(blob) // 2 * 2], dtype="<i2").astype(np.float32) / np.float32(
        32768.0
    )
