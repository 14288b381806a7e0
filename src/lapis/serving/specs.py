"""What the store keeps about serving, as plain values (the shared contract).

    BackendSpec   an engine registered for a region and a model: the simulator,
                  an OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM
                  Studio, OpenAI) or a real Azure OpenAI deployment
    PoolSpec      a load-balancing pool bound to one deployment, with members
    MemberSpec    one pool member: a Lapis deployment (by ARM id, on any
                  account) or a registered backend; priority (lower first)
                  and weight (share within a priority)
    FaultSpec     injected misbehaviour, scoped to a region or to one member

Secrets (upstream keys, client secrets) sit in `secret`; they are never
returned by the admin API or written to logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BACKEND_KINDS = ("simulator", "openai-compatible", "azure")
MEMBER_KINDS = ("deployment", "backend")
FAULT_SCOPES = ("region", "member")


@dataclass(frozen=True, slots=True)
class BackendSpec:
    id: str  # name chosen by the admin, unique, e.g. "vllm-eastus-1"
    region: str  # location, e.g. "eastus"
    model: str  # catalogue model name, e.g. "gpt-4o-mini"
    kind: str  # one of BACKEND_KINDS
    url: str = ""  # openai-compatible: base URL ending in /v1; azure: https://{res}.openai.azure.com
    upstream_model: str = ""  # openai-compatible: the engine's model name
    deployment: str = ""  # azure: the upstream deployment name
    api_version: str = ""  # azure: api-version to send
    # azure Entra client credentials: {"tenant", "client_id", "authority"}; the secret is in `secret`
    auth: dict[str, Any] = field(default_factory=dict)
    secret: str = ""  # api key, or client secret when auth has client_id
    timeout_s: float = 60.0  # whole-request deadline for one attempt at this backend
    weight: int = 1  # share among backends of one region and model


@dataclass(frozen=True, slots=True)
class MemberSpec:
    id: str  # unique within the pool, e.g. "westus-prod"
    kind: str  # "deployment" (target = deployment ARM id) or "backend" (target = BackendSpec.id)
    target: str
    priority: int = 1
    weight: int = 1


@dataclass(frozen=True, slots=True)
class PoolSpec:
    name: str  # unique per subscription
    subscription_id: str
    deployment_id: str  # ARM id of the deployment this pool serves (callers keep its name)
    members: tuple[MemberSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class FaultSpec:
    scope: str  # "region" or "member"
    target: str  # a location (e.g. "eastus"), or a member key (lapis.serving.balancer.Member.key)
    rate_429: float = 0.0  # share of calls answered 429 with retry_after_s
    rate_503: float = 0.0  # share of calls answered 503
    retry_after_s: float = 1.0
    latency_ms: float = 0.0  # added before the first byte
    hang: bool = False  # never answer (the caller's deadline ends it)
    cut_after: int | None = None  # streams: cut after this many chunks, mid-stream
    down: bool = False  # refuse every call (connection refused)
