"""The serving admin API (Lapis's own, not Azure's), under /lapis/admin.

    GET    /lapis/admin/backends                       {"value": [Backend]}
    PUT    /lapis/admin/backends/{id}                  BackendBody -> 201 created / 200 replaced, Backend
    GET    /lapis/admin/backends/{id}                  Backend
    DELETE /lapis/admin/backends/{id}                  200 deleted / 204 absent; 409 while a pool lists it
    GET    /lapis/admin/pools                          {"value": [Pool]}
    PUT    /lapis/admin/pools/{name}                   {"deploymentId", "members"?: [MemberBody + "id"]} -> Pool
    GET    /lapis/admin/pools/{name}                   Pool
    DELETE /lapis/admin/pools/{name}                   200 / 204
    PUT    /lapis/admin/pools/{name}/members/{id}      MemberBody -> 201 / 200, the whole Pool
    DELETE /lapis/admin/pools/{name}/members/{id}      200 / 204
    GET    /lapis/admin/faults                         {"value": [Fault]}
    PUT    /lapis/admin/faults/{scope}/{target}        FaultBody -> 201 / 200, Fault
    DELETE /lapis/admin/faults/{scope}/{target}        200 / 204
    DELETE /lapis/admin/faults                         remove them all -> {"removed": n}

Pools live in a subscription: the one `?subscription=<id>` names on any pool
route, else the local one (lapis.services.DEFAULT_SUBSCRIPTION); an unknown
subscription is ARM's 404 SubscriptionNotFound. A fault's {target} is a
location (scope region) or a member key (scope member: `backend:<id>`,
`sim:<region>`, `member:<pool>/<member id>`; the slash may be sent as is or
as %2F).

    Backend    {"id", "region", "model", "kind", "url", "upstreamModel", "deployment", "apiVersion",
                "auth": null | {"tenant", "clientId", "authority"}, "hasSecret", "timeoutSeconds", "weight"}
    BackendBody  the same without id and hasSecret, plus "apiKey" or "auth.clientSecret" (never returned)
    Pool       {"name", "subscriptionId", "deploymentId", "members": [Member]}
    Member     {"id", "kind", "target", "priority", "weight", "key"}   key: its member key, for faults
    MemberBody {"kind": "deployment" | "backend", "target": deployment ARM id | backend id, "priority"?, "weight"?}
    Fault      {"scope", "target", "rate429", "rate503", "retryAfterSeconds", "latencyMs", "hang", "cutAfter",
                "down"}

Only the local admin credential (a bearer token) may call these. Errors use
ARM's envelope (the checks are in lapis.management.serving).
"""

from __future__ import annotations

from typing import Any, Callable

from aiohttp import web

from lapis.management import serving
from lapis.management.bodies import read_json
from lapis.management.routes import arm_json, check_admin
from lapis.serving.specs import BackendSpec, FaultSpec, MemberSpec, PoolSpec
from lapis.services import Services


def backend_json(spec: BackendSpec) -> dict[str, Any]:
    auth = ({"tenant": spec.auth.get("tenant", ""), "clientId": spec.auth.get("client_id", ""),
             "authority": spec.auth.get("authority", "")} if spec.auth else None)
    return {"id": spec.id, "region": spec.region, "model": spec.model, "kind": spec.kind, "url": spec.url,
            "upstreamModel": spec.upstream_model, "deployment": spec.deployment, "apiVersion": spec.api_version,
            "auth": auth, "hasSecret": bool(spec.secret), "timeoutSeconds": spec.timeout_s, "weight": spec.weight}


def member_json(pool: PoolSpec, member: MemberSpec) -> dict[str, Any]:
    return {"id": member.id, "kind": member.kind, "target": member.target, "priority": member.priority,
            "weight": member.weight, "key": f"member:{pool.name}/{member.id}"}


def pool_json(pool: PoolSpec) -> dict[str, Any]:
    return {"name": pool.name, "subscriptionId": pool.subscription_id, "deploymentId": pool.deployment_id,
            "members": [member_json(pool, m) for m in pool.members]}


def fault_json(spec: FaultSpec) -> dict[str, Any]:
    return {"scope": spec.scope, "target": spec.target, "rate429": spec.rate_429, "rate503": spec.rate_503,
            "retryAfterSeconds": spec.retry_after_s, "latencyMs": spec.latency_ms, "hang": spec.hang,
            "cutAfter": spec.cut_after, "down": spec.down}


def _gone(deleted: bool) -> web.Response:
    """ARM's delete answers: 200 when something was deleted, 204 when there was nothing."""
    return web.Response(status=200 if deleted else 204)


def add_routes(app: web.Application, services: Callable[[], Services]) -> None:
    def admin(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def checked(request: web.Request) -> web.StreamResponse:
            check_admin(services(), request)
            return await handler(request)
        return checked

    async def pools_sub(request: web.Request) -> str:
        return await serving.subscription(services(), request.query.get("subscription"))

    # -- backends --------------------------------------------------------------

    async def list_backends(request: web.Request) -> web.Response:
        return arm_json({"value": [backend_json(b) for b in await serving.store(services()).backends()]})

    async def put_backend(request: web.Request) -> web.Response:
        spec, created = await serving.put_backend(services(), request.match_info["id"], await read_json(request))
        return arm_json(backend_json(spec), 201 if created else 200)

    async def get_backend(request: web.Request) -> web.Response:
        return arm_json(backend_json(await serving.require_backend(services(), request.match_info["id"])))

    async def delete_backend(request: web.Request) -> web.Response:
        return _gone(await serving.delete_backend(services(), request.match_info["id"]))

    # -- pools -------------------------------------------------------------------

    async def list_pools(request: web.Request) -> web.Response:
        found = await serving.store(services()).pools(await pools_sub(request))
        return arm_json({"value": [pool_json(p) for p in found]})

    async def put_pool(request: web.Request) -> web.Response:
        sub = await pools_sub(request)
        pool, created = await serving.put_pool(services(), sub, request.match_info["name"], await read_json(request))
        return arm_json(pool_json(pool), 201 if created else 200)

    async def get_pool(request: web.Request) -> web.Response:
        return arm_json(pool_json(await serving.require_pool(services(), await pools_sub(request),
                                                             request.match_info["name"])))

    async def delete_pool(request: web.Request) -> web.Response:
        return _gone(await serving.delete_pool(services(), await pools_sub(request), request.match_info["name"]))

    async def put_member(request: web.Request) -> web.Response:
        sub = await pools_sub(request)
        pool, created = await serving.put_member(services(), sub, request.match_info["name"],
                                                 request.match_info["id"], await read_json(request))
        return arm_json(pool_json(pool), 201 if created else 200)

    async def delete_member(request: web.Request) -> web.Response:
        return _gone(await serving.delete_member(services(), await pools_sub(request), request.match_info["name"],
                                                 request.match_info["id"]))

    # -- faults ------------------------------------------------------------------

    async def list_faults(request: web.Request) -> web.Response:
        return arm_json({"value": [fault_json(f) for f in await serving.store(services()).faults()]})

    async def put_fault(request: web.Request) -> web.Response:
        spec, created = await serving.put_fault(services(), request.match_info["scope"], request.match_info["target"],
                                                await read_json(request))
        return arm_json(fault_json(spec), 201 if created else 200)

    async def delete_fault(request: web.Request) -> web.Response:
        return _gone(await serving.delete_fault(services(), request.match_info["scope"],
                                                request.match_info["target"]))

    async def reset_faults(request: web.Request) -> web.Response:
        return arm_json({"removed": await serving.reset_faults(services())})

    base = "/lapis/admin"
    router = app.router
    router.add_get(f"{base}/backends", admin(list_backends))
    router.add_put(f"{base}/backends/{{id}}", admin(put_backend))
    router.add_get(f"{base}/backends/{{id}}", admin(get_backend))
    router.add_delete(f"{base}/backends/{{id}}", admin(delete_backend))
    router.add_get(f"{base}/pools", admin(list_pools))
    router.add_put(f"{base}/pools/{{name}}", admin(put_pool))
    router.add_get(f"{base}/pools/{{name}}", admin(get_pool))
    router.add_delete(f"{base}/pools/{{name}}", admin(delete_pool))
    router.add_put(f"{base}/pools/{{name}}/members/{{id}}", admin(put_member))
    router.add_delete(f"{base}/pools/{{name}}/members/{{id}}", admin(delete_member))
    router.add_get(f"{base}/faults", admin(list_faults))
    router.add_delete(f"{base}/faults", admin(reset_faults))
    router.add_put(f"{base}/faults/{{scope}}/{{target:.+}}", admin(put_fault))
    router.add_delete(f"{base}/faults/{{scope}}/{{target:.+}}", admin(delete_fault))
