"""LLM backends behind one interface (see base.py)."""

from actors.brain.backends.base import (
    Backend,
    BackendError,
    BackendOverloaded,
    ModelMissing,
    Params,
    Stream,
    Turn,
    Usage,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendOverloaded",
    "ModelMissing",
    "Params",
    "Stream",
    "Turn",
    "Usage",
]
