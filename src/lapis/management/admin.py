"""Lapis's own admin API (not part of Azure), under /lapis/admin.

    POST /lapis/admin/subscriptions                     {"displayName", "subscriptionId"?, "approved"?}
    POST /lapis/admin/subscriptions/{sub}/approve       approve the subscription for kind OpenAI
    POST /lapis/admin/subscriptions/{sub}/revoke        withdraw that approval
    GET  /lapis/admin/stats                             backend and rate-limit counters
    GET  /lapis/admin/quotaRequests                     every subscription's quota increase requests
    POST /lapis/admin/quotaRequests/{id}/approve        raise the limit to the one requested
    POST /lapis/admin/quotaRequests/{id}/reject         {"reason"}: refuse, saying why

Same credential as ARM: the local admin bearer token.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from aiohttp import web

from lapis.management import quota, shapes, tenancy
from lapis.management.quota_routes import quota_request
from lapis.management.routes import arm_json, check_admin, read_json
from lapis.services import Services


def add_routes(app: web.Application, services: Callable[[], Services]) -> None:
    async def create(request: web.Request) -> web.Response:
        check_admin(services(), request)
        body = await read_json(request)
        sub = await tenancy.create_subscription(services(), str(body.get("displayName") or "Lapis subscription"),
                                                body.get("subscriptionId"), bool(body.get("approved", False)))
        return arm_json({**shapes.subscription(sub), "openAIApproved": sub.openai_approved}, 201)

    async def approve(request: web.Request, approved: bool = True) -> web.Response:
        check_admin(services(), request)
        sub_id = request.match_info["sub"]
        await tenancy.require_subscription(services(), sub_id)
        await services().store.approve_subscription(sub_id, approved)
        sub = await tenancy.require_subscription(services(), sub_id)
        return arm_json({**shapes.subscription(sub), "openAIApproved": sub.openai_approved})

    async def revoke(request: web.Request) -> web.Response:
        return await approve(request, approved=False)

    async def stats(request: web.Request) -> web.Response:
        check_admin(services(), request)
        gate = services().gate
        limits = {"admitted": gate.admitted, "denied": gate.denied,
                  "storeFailures": getattr(gate.limiter, "failures", 0)}
        return arm_json({"backend": dataclasses.asdict(services().backend.stats), "limits": limits})

    async def quota_requests(request: web.Request) -> web.Response:
        check_admin(services(), request)
        found = await quota.list_requests(services())
        return arm_json({"value": [quota_request(r) for r in found]})

    async def approve_quota(request: web.Request) -> web.Response:
        check_admin(services(), request)
        return arm_json(quota_request(await quota.approve(services(), request.match_info["id"])))

    async def reject_quota(request: web.Request) -> web.Response:
        check_admin(services(), request)
        body = await read_json(request)
        return arm_json(quota_request(await quota.reject(services(), request.match_info["id"], body.get("reason"))))

    app.router.add_post("/lapis/admin/subscriptions", create)
    app.router.add_post("/lapis/admin/subscriptions/{sub}/approve", approve)
    app.router.add_post("/lapis/admin/subscriptions/{sub}/revoke", revoke)
    app.router.add_get("/lapis/admin/stats", stats)
    app.router.add_get("/lapis/admin/quotaRequests", quota_requests)
    app.router.add_post("/lapis/admin/quotaRequests/{id}/approve", approve_quota)
    app.router.add_post("/lapis/admin/quotaRequests/{id}/reject", reject_quota)
