"""Hex's local page: chat in the browser over the bus, served by the web actor (Starlette and
uvicorn in the actor's own process)."""
