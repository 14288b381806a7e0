"""One backend per registered engine, from its BackendSpec."""

from __future__ import annotations

from lapis.backends.base import Backend
from lapis.backends.http import SessionFactory
from lapis.backends.simulator import SimulatorBackend
from lapis.backends.upstream import AzureBackend, OpenAICompatibleBackend
from lapis.serving.specs import BACKEND_KINDS, BackendSpec

__all__ = ["make_backend"]


def make_backend(spec: BackendSpec, session_factory: SessionFactory | None = None) -> Backend:
    """The simulator (no added latency), an OpenAI-compatible engine or an
    Azure deployment. ValueError for an unknown kind or a spec missing what
    its kind needs (url; an azure deployment; auth.tenant with client_id)."""
    if spec.kind == "simulator":
        return SimulatorBackend()
    if spec.kind == "openai-compatible":
        return OpenAICompatibleBackend(spec, session_factory)
    if spec.kind == "azure":
        return AzureBackend(spec, session_factory)
    raise ValueError(f"unknown backend kind {spec.kind!r}; expected one of {', '.join(BACKEND_KINDS)}")
