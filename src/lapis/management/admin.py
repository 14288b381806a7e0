"""Lapis's own admin API (not part of Azure), under /lapis/admin.

    POST /lapis/admin/subscriptions                     {"displayName", "subscriptionId"?, "approved"?}
    POST /lapis/admin/subscriptions/{sub}/approve       approve the subscription for kind OpenAI
    POST /lapis/admin/subscriptions/{sub}/revoke        withdraw that approval
    GET  /lapis/admin/stats                             backend counters (tokens, streams)

Same credential as ARM: the local admin bearer token.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from aiohttp import web

from lapis.management import shapes, tenancy
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
        return arm_json({"backend": dataclasses.asdict(services().backend.stats)})

    app.router.add_post("/lapis/admin/subscriptions", create)
    app.router.add_post("/lapis/admin/subscriptions/{sub}/approve", approve)
    app.router.add_post("/lapis/admin/subscriptions/{sub}/revoke", revoke)
    app.router.add_get("/lapis/admin/stats", stats)
