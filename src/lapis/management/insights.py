"""Azure Monitor's metric routes on an account (Microsoft.Insights, an extension provider).

    GET {acct}/providers/Microsoft.Insights/metrics            Metrics - List (lapis.metrics.query)
    GET {acct}/providers/Microsoft.Insights/metricDefinitions  Metric Definitions - List

As ARM routes they need the admin credential or a token whose principal has
Microsoft.Insights/metrics/read (metricDefinitions/read) over the account;
Reader, Cognitive Services User and Contributor have it (lapis.auth).
Registered by app.py on the ARM router: `insights.add_routes(arm.router)`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lapis.management import accounts
from lapis.management.routes import ACCT, Ctx, arm_json
from lapis.management.router import ArmRouter
from lapis.metrics import params
from lapis.metrics.definitions import DIMENSIONS, METRICS, NAMESPACE
from lapis.metrics.query import query_metrics
from lapis.store.metering import MeteringStore

INSIGHTS = f"{ACCT}/providers/Microsoft.Insights"
GRAINS = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H", "PT6H", "PT12H", "P1D")


async def list_metrics(c: Ctx) -> web.Response:
    account = await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))
    query = params.parse(c.request.query)
    return arm_json(await query_metrics(MeteringStore(c.services.store.db), c.services.directory, account, query))


async def list_definitions(c: Ctx) -> web.Response:
    account = await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))
    resource_id = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.group}"
                   f"/providers/Microsoft.CognitiveServices/accounts/{account.name}")
    retention = f"P{c.services.settings.metrics_retention_days}D"
    dimensions = [{"value": d, "localizedValue": d} for d in DIMENSIONS]
    value: list[dict[str, Any]] = [{
        "id": f"{resource_id}/providers/microsoft.insights/metricdefinitions/{m.name}",
        "resourceId": resource_id, "namespace": NAMESPACE,
        "name": {"value": m.name, "localizedValue": m.display}, "displayDescription": m.description,
        "isDimensionRequired": False, "unit": m.unit, "primaryAggregationType": m.primary,
        "supportedAggregationTypes": list(m.aggregations),
        "metricAvailabilities": [{"timeGrain": grain, "retention": retention} for grain in GRAINS],
        "dimensions": [{"value": "ModelDeploymentName", "localizedValue": "ModelDeploymentName"}]
        if m.kind == "ptu" else dimensions,
    } for m in METRICS]
    return arm_json({"value": value})


def add_routes(r: ArmRouter) -> None:
    r.add("GET", f"{INSIGHTS}/metrics", list_metrics)
    r.add("GET", f"{INSIGHTS}/metricDefinitions", list_definitions)
