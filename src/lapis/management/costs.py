"""Cost Management's query route (Microsoft.CostManagement, an extension provider).

    POST /subscriptions/{sub}/providers/Microsoft.CostManagement/query
    POST /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CostManagement/query

Body and answer: lapis.usage.costquery. The answer is a Query resource:
{"id": "subscriptions/{sub}/providers/Microsoft.CostManagement/query/{guid}",
"name": guid, "type": "Microsoft.CostManagement/query", "location": null,
"sku": null, "eTag": null, "properties": {"nextLink": null, "columns", "rows"}},
as Azure's captures show it (no leading slash in the id). All rows come in one
answer (nextLink is always null). Token callers need
Microsoft.CostManagement/query/action over the scope (lapis.auth).
Registered by app.py on the ARM router: `costs.add_routes(arm.router)`.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from lapis.management import tenancy
from lapis.management.routes import Ctx, arm_json
from lapis.management.router import ArmRouter
from lapis.store.metering import MeteringStore, UsageScope
from lapis.usage import costquery

QUERY = "providers/Microsoft.CostManagement/query"


async def _answer(c: Ctx, scope: UsageScope, path: str) -> web.Response:
    query = costquery.parse(c.body)
    properties = await costquery.run_query(MeteringStore(c.services.store.db), scope, query)
    name = str(uuid.uuid4())
    return arm_json({"id": f"{path}/{QUERY}/{name}", "name": name, "type": "Microsoft.CostManagement/query",
                     "location": None, "sku": None, "eTag": None, "properties": properties})


async def subscription_query(c: Ctx) -> web.Response:
    sub = await tenancy.require_subscription(c.services, c.p("sub"))
    return await _answer(c, UsageScope(sub.id), f"subscriptions/{sub.id}")


async def group_query(c: Ctx) -> web.Response:
    group = await tenancy.require_group(c.services, c.p("sub"), c.p("rg"))
    return await _answer(c, UsageScope(group.subscription_id, group.name),
                         f"subscriptions/{group.subscription_id}/resourceGroups/{group.name}")


def add_routes(r: ArmRouter) -> None:
    r.add("POST", f"/subscriptions/{{sub}}/{QUERY}", subscription_query)
    r.add("POST", f"/subscriptions/{{sub}}/resourceGroups/{{rg}}/{QUERY}", group_query)
