"""A Backend whose engine fails in an unexpected way: every call raises RuntimeError (Azure's 500)."""

from __future__ import annotations

from lapis.backends.base import BackendStats


class BrokenBackend:
    stats = BackendStats()

    async def chat(self, call):
        raise RuntimeError("engine exploded")

    def chat_stream(self, call):
        raise RuntimeError("engine exploded")

    async def embed(self, call):
        raise RuntimeError("engine exploded")

    async def close(self) -> None:
        return None
