"""The serving view: for each deployment, the engines that may answer it.

`Serving.route(account, deployment)` gives a Route, built once and cached
until the directory or the serving records change:

    no pool     the backends registered for the deployment's model in the
                regions its SKU may use (lapis.serving.residency): the
                account's own region at priority 1, the others at 2. Where
                none is registered, the simulator of each allowed region.
    pool        the pool's members, each with its priority and weight. A
                member deployment (on any account) is served by its own
                engines, after admission against its own quota: a full
                member is skipped like a 429 (the pooled deployment itself
                admits nothing — it is the load balancer's name, as an APIM
                endpoint in front of several deployments).

The common case, one deployment on the built-in simulator with no fault
set, is a Route with `direct`: the data plane calls the simulator without
the balancer (the measured hot path).
"""

from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator

from lapis.backends.base import Backend, ChatCall, Completion, Delta, EmbedCall, UpstreamError, Usage
from lapis.dataplane.admission import call_cost, embeddings_cost
from lapis.dataplane.directory import AccountEntry, DeploymentEntry
from lapis.serving.balancer import Balancer, Member, RetryPolicy
from lapis.serving.residency import allowed_regions
from lapis.serving.route import Route
from lapis.serving.specs import BackendSpec, PoolSpec

log = logging.getLogger("lapis.serving")


class Serving:
    """Engines, pools and faults, as read from the store; routes built from them."""

    def __init__(self, services: Any, balancer: Balancer, deadline_s: float = 120.0):
        self.services = services
        self.balancer = balancer
        # A member deployment's own engines get one round: the pool's balancer
        # already retries across members, and retries must not multiply.
        self.inner = Balancer(balancer.breakers, balancer.faults, RetryPolicy(max_attempts=1))
        self.faults = balancer.faults
        self.deadline_s = deadline_s
        self.specs: dict[str, BackendSpec] = {}
        self.engines: dict[str, Backend] = {}
        self.pools: dict[str, PoolSpec] = {}  # deployment ARM id, lower-case -> its pool
        self.has_faults = False
        self._routes: dict[tuple[str, str], Route] = {}
        self._directory_version = -1

    # -- loading ---------------------------------------------------------------

    async def reload(self) -> None:
        from lapis.store.serving import ServingStore

        store = ServingStore(self.services.store.db, self.services.store.keyring)
        specs = {s.id: s for s in await store.backends()}
        pools = await store.pools()
        faults = await store.faults()
        await self._replace_engines(specs)
        self.pools = {p.deployment_id.lower(): p for p in pools}
        if set(faults) != set(self.faults.specs):
            # Breakers the injected faults opened must not outlive them: after
            # `lapis fault reset` every member is tried again at once.
            await self.balancer.breakers.reset()
        self.faults.replace(faults)
        self.has_faults = bool(faults)
        self._routes.clear()

    async def _replace_engines(self, specs: dict[str, BackendSpec]) -> None:
        from lapis.backends.upstream import make_backend

        stale = [i for i, old in self.specs.items() if specs.get(i) != old]
        for backend_id in stale:
            engine = self.engines.pop(backend_id, None)
            if engine is not None:
                await engine.close()
        for backend_id, spec in specs.items():
            if backend_id not in self.engines:
                self.engines[backend_id] = make_backend(spec)
        self.specs = specs

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.close()
        self.engines.clear()
        await self.balancer.breakers.close()

    # -- routes ----------------------------------------------------------------

    def route(self, account: AccountEntry, dep: DeploymentEntry) -> Route:
        version = self.services.directory.version
        if version != self._directory_version:
            self._routes.clear()
            self._directory_version = version
        key = (account.id, dep.name)
        route = self._routes.get(key)
        if route is None or route.dep is not dep:
            route = self._routes[key] = self._build(account, dep)
        return route

    def deadline(self) -> float:
        return time.monotonic() + self.deadline_s

    def _build(self, account: AccountEntry, dep: DeploymentEntry) -> Route:
        pool = self.pools.get(f"{account.arm_id}/deployments/{dep.name}".lower())
        if pool is not None and pool.members:
            members = tuple(m for m in (self._pool_member(pool, spec) for spec in pool.members) if m is not None)
            return Route(members, pooled=True, dep=dep)
        members = self.engines_for(account.location, dep)
        simulator_only = len(members) == 1 and members[0].key.startswith("sim:")
        direct = members[0].backend if simulator_only and not self.has_faults else None
        return Route(members, direct=direct, dep=dep)

    def engines_for(self, location: str, dep: DeploymentEntry) -> tuple[Member, ...]:
        """The engines of a deployment itself (never its pool), own region first."""
        regions = allowed_regions(dep.sku, location, frozenset(self.services.catalogue.regions))
        registered = [s for s in self.specs.values() if s.model == dep.model.name and s.region in regions]
        if registered:
            return tuple(Member(key=f"backend:{s.id}", name=dep.name, region=s.region, backend=self.engines[s.id],
                                priority=1 if s.region == location else 2, weight=s.weight)
                         for s in sorted(registered, key=lambda s: s.id))
        offered = {r for places in dep.model.skus.values() for r in places}
        others = sorted((regions & offered) - {location})
        simulator = self.services.backend
        return tuple([Member(key=f"sim:{location}", name=dep.name, region=location, backend=simulator)]
                     + [Member(key=f"sim:{r}", name=dep.name, region=r, backend=simulator, priority=2)
                        for r in others])

    def _pool_member(self, pool: PoolSpec, spec: Any) -> Member | None:
        key = f"member:{pool.name}/{spec.id}"
        if spec.kind == "backend":
            backend = self.specs.get(spec.target)
            if backend is None:
                log.warning("pool %s: member %s names an unknown backend %s", pool.name, spec.id, spec.target)
                return None
            return Member(key=key, name=spec.id, region=backend.region, backend=self.engines[backend.id],
                          priority=spec.priority, weight=spec.weight)
        target_id, _, dep_name = spec.target.rpartition("/deployments/")
        account = self.services.directory.by_arm_id(target_id)
        target = account.deployment(dep_name) if account else None
        if account is None or target is None:
            log.warning("pool %s: member %s names no deployment (%s)", pool.name, spec.id, spec.target)
            return None
        inner = MemberDeployment(self, account, target, self.engines_for(account.location, target))
        return Member(key=key, name=target.name, region=account.location, backend=inner,
                      priority=spec.priority, weight=spec.weight)


class MemberDeployment:
    """A Lapis deployment acting as a pool member: admitted against its own
    quota, then served by its own engines (one round). A refusal for quota is
    a 429 with the deployment's retry-after, so the pool's breaker rests
    that member until its window has room again, as it would for a real
    Azure deployment answering 429."""

    def __init__(self, serving: Serving, account: AccountEntry, dep: DeploymentEntry, members: tuple[Member, ...]):
        self.serving = serving
        self.account = account
        self.dep = dep
        self.members = members
        self.stats = serving.services.backend.stats

    async def _reserve(self, cost: int) -> Any:
        gate = self.serving.services.gate
        admission = await gate.reserve(self.account, self.dep, cost)
        if not admission.decision.allowed:
            retry = max(admission.decision.retry_after_ms, 1) / 1000.0
            raise UpstreamError("rate_limited", f"deployment {self.dep.name} is over its quota", 429, retry)
        return admission

    async def chat(self, call: ChatCall) -> Completion:
        gate = self.serving.services.gate
        admission = await self._reserve(call_cost(call.messages, call.max_tokens, call.n))
        used = 0
        try:
            result, _ = await self.serving.inner.chat(self.members, call, self.serving.deadline())
            if result.usage is not None:
                used = result.usage.prompt_tokens + result.usage.completion_tokens
            else:
                used = admission.cost  # counted by the caller; charge the estimate here
            return result
        finally:
            gate.settle(admission, used)

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[Delta | Usage]:
        admission = await self._reserve(call_cost(call.messages, call.max_tokens, call.n))
        try:
            items, _ = await self.serving.inner.chat_stream(self.members, call, self.serving.deadline())
            try:
                async for item in items:
                    yield item
            finally:
                await items.aclose()  # type: ignore[attr-defined]
        finally:
            self.serving.services.gate.settle(admission, admission.cost)  # a stream is charged its estimate

    async def embed(self, call: EmbedCall) -> list[list[float]]:
        admission = await self._reserve(embeddings_cost(call.inputs))
        try:
            vectors, _ = await self.serving.inner.embed(self.members, call, self.serving.deadline())
            return vectors
        finally:
            self.serving.services.gate.settle(admission, admission.cost)

    async def close(self) -> None:
        return None


async def open_serving(services: Any) -> Serving:
    """The serving view for a new server: breakers in Redis when Redis is
    configured (shared by replicas), else in memory; loaded from the store,
    and reloaded when another replica says serving records changed."""
    from lapis.serving.breaker import open_breakers
    from lapis.serving.faults import FaultBoard
    from lapis.services import SERVING_CHANNEL

    settings = services.settings
    balancer = Balancer(open_breakers(settings.redis_url or None), FaultBoard())
    serving = Serving(services, balancer, deadline_s=settings.upstream_deadline_s)
    await serving.reload()

    def changed(_payload: str) -> None:
        services.spawn(serving.reload())

    await services.store.db.listen(SERVING_CHANNEL, changed)
    return serving
