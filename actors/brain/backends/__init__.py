"""LLM backends behind one interface (see base.py)."""

from actors.brain.backends.base import (
    Backend,
    BackendError,
    BackendOverloaded,
    ChatTurn,
    ModelLoader,
    Params,
    Stream,
    Usage,
    load_in_thread,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendOverloaded",
    "ChatTurn",
    "ModelLoader",
    "Params",
    "Stream",
    "Usage",
    "load_in_thread",
]
