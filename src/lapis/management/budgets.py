"""Budget routes (Microsoft.Consumption/budgets, an extension resource; api-version 2023-05-01).

    PUT    {scope}/providers/Microsoft.Consumption/budgets/{name}   201 created, 200 replaced
    GET    {scope}/providers/Microsoft.Consumption/budgets/{name}   200, or 404
    DELETE {scope}/providers/Microsoft.Consumption/budgets/{name}   200, or 204 when there was none
    GET    {scope}/providers/Microsoft.Consumption/budgets          {"value": [...]}

{scope} is a subscription, a resource group, or (Lapis only) an
account: /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{a}.
A list holds the budgets of exactly that scope. Bodies and rules:
lapis.budgets.model and lapis.budgets.manage. Token callers need
Microsoft.Consumption/budgets/read|write|delete over the budget (lapis.auth).
Registered by app.py on the ARM router: `budgets.add_routes(arm.router)`.
"""

from __future__ import annotations

from aiohttp import web

from lapis.budgets import manage
from lapis.management import accounts, tenancy
from lapis.management.routes import ACCT, Ctx, arm_json
from lapis.management.router import ArmRouter
from lapis.requestkeys import state_of

BUDGETS = "providers/Microsoft.Consumption/budgets"
SUB = "/subscriptions/{sub}"
GROUP = "/subscriptions/{sub}/resourceGroups/{rg}"


async def _scope(c: Ctx) -> str:
    """The scope of the request, checked to exist, spelled as stored."""
    if "account" in c.params:
        account = await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))
        return (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.group}"
                f"/providers/Microsoft.CognitiveServices/accounts/{account.name}")
    if "rg" in c.params:
        group = await tenancy.require_group(c.services, c.p("sub"), c.p("rg"))
        return f"/subscriptions/{group.subscription_id}/resourceGroups/{group.name}"
    sub = await tenancy.require_subscription(c.services, c.p("sub"))
    return f"/subscriptions/{sub.id}"


def _request_id(c: Ctx) -> str:
    return state_of(c.request).request_id


async def list_budgets(c: Ctx) -> web.Response:
    return arm_json({"value": await manage.list_budgets(c.services.budgets, await _scope(c))})


async def get_budget(c: Ctx) -> web.Response:
    return arm_json(await manage.get_budget(c.services.budgets, await _scope(c), c.p("name"), _request_id(c)))


async def put_budget(c: Ctx) -> web.Response:
    body, created = await manage.put_budget(c.services.budgets, await _scope(c), c.p("name"), c.body,
                                            _request_id(c))
    return arm_json(body, 201 if created else 200)


async def delete_budget(c: Ctx) -> web.Response:
    removed = await manage.delete_budget(c.services.budgets, await _scope(c), c.p("name"), _request_id(c))
    return web.Response(status=200 if removed else 204)


def add_routes(r: ArmRouter) -> None:
    for scope in (SUB, GROUP, ACCT):
        r.add("GET", f"{scope}/{BUDGETS}", list_budgets)
        for method, handler in (("PUT", put_budget), ("GET", get_budget), ("DELETE", delete_budget)):
            r.add(method, f"{scope}/{BUDGETS}/{{name}}", handler)
