"""Quota routes and their JSON: usages (ARM) and quota increase requests (Lapis).

ARM, as Azure serves them (wire reference §5.3, §6.2):

    GET {subp}/locations/{location}/usages     {"value": [Usage]}
    GET {acct}/usages                          the same items, for the account's location

Quota increase requests are Lapis's own API. Azure files them through the
portal or the Microsoft.Quota provider, with a support workflow behind it;
Lapis keeps them under the Cognitive Services provider of the subscription,
and a Lapis admin decides (lapis.management.admin):

    POST {subp}/locations/{location}/quotaRequests   {"model", "sku", "limit"} -> 201 QuotaRequest
    GET  {subp}/quotaRequests                        {"value": [QuotaRequest]}
    GET  {subp}/quotaRequests/{id}                   QuotaRequest

A Usage is {"name": {"value", "localizedValue"}, "currentValue", "limit",
"unit": "Count"} with the numbers as floats, as Azure's captures show them.
A QuotaRequest is ARM-shaped: {"id", "name", "type", "properties": {...}}.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lapis.management import accounts, quota
from lapis.management.routes import ACCT, SUBP, Ctx, arm_json
from lapis.management.router import ArmRouter
from lapis.store.quota import QuotaRequest

REQUEST_TYPE = "Microsoft.CognitiveServices/quotaRequests"


def usage_item(usage: quota.Usage) -> dict[str, Any]:
    return {"name": {"value": usage.name, "localizedValue": usage.localized}, "currentValue": float(usage.current),
            "limit": float(usage.limit), "unit": "Count"}


def quota_request(req: QuotaRequest) -> dict[str, Any]:
    """A quota request as Lapis's API returns it (Lapis's shape; see the module docstring)."""
    return {
        "id": quota.request_path(req.id, req.subscription_id),
        "name": req.id,
        "type": REQUEST_TYPE,
        "properties": {
            "subscriptionId": req.subscription_id,
            "location": req.location,
            "name": {"value": req.usage_name, "localizedValue": quota.localized_name(req.model, req.sku)},
            "model": req.model,
            "sku": req.sku,
            "requestedLimit": req.requested_limit,
            "previousLimit": req.previous_limit,
            "state": req.state,
            "createdAt": req.created_at,
            "decidedAt": req.decided_at,
            "decidedBy": req.decided_by,
            "reason": req.reason,
        },
    }


async def location_usages(c: Ctx) -> web.Response:
    items = await quota.location_usages(c.services, c.p("sub"), c.p("location"))
    return arm_json({"value": [usage_item(u) for u in items]})


async def account_usages(c: Ctx) -> web.Response:
    account = await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))
    items = await quota.location_usages(c.services, account.subscription_id, account.location)
    return arm_json({"value": [usage_item(u) for u in items]})


async def file_request(c: Ctx) -> web.Response:
    req = await quota.file_request(c.services, c.p("sub"), c.p("location"), c.body)
    return arm_json(quota_request(req), 201)


async def list_requests(c: Ctx) -> web.Response:
    found = await quota.list_requests(c.services, c.p("sub"))
    return arm_json({"value": [quota_request(r) for r in found]})


async def get_request(c: Ctx) -> web.Response:
    return arm_json(quota_request(await quota.require_request(c.services, c.p("id"), c.p("sub"))))


def add_routes(r: ArmRouter) -> None:
    r.add("GET", f"{SUBP}/locations/{{location}}/usages", location_usages)
    r.add("GET", f"{ACCT}/usages", account_usages)
    r.add("POST", f"{SUBP}/locations/{{location}}/quotaRequests", file_request)
    r.add("GET", f"{SUBP}/quotaRequests", list_requests)
    r.add("GET", f"{SUBP}/quotaRequests/{{id}}", get_request)
