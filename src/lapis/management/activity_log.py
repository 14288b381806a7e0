"""The Activity Log, as Azure Monitor serves it (api-version 2015-04-01).

    GET /subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values
        ?api-version=2015-04-01&$filter=eventTimestamp ge '…' [and …]&$select=a,b
    200 {"value": [EventData, ...], "nextLink"?}

Newest first, PAGE events a page; `nextLink` carries `$skiptoken` (an offset)
when there are more. `$filter` is lapis.audit.filter's, `$select` keeps only
the named top-level fields. The events are lapis.audit.events'.

Events are written by a queue off the request path; a list first lets that
queue catch up (for at most a second), so a change shows up in the listing
that follows it.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from aiohttp import web

from lapis.audit.filter import parse_filter
from lapis.diagnostics import errors
from lapis.management import tenancy
from lapis.management.routes import Ctx, arm_json
from lapis.management.router import ArmRouter

VALUES = "/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"
PAGE = 200


async def list_events(c: Ctx) -> web.Response:
    sub = c.p("sub")
    await tenancy.require_subscription(c.services, sub)
    query = c.request.query
    where = parse_filter(query.get("$filter"), time.time())
    token = query.get("$skiptoken") or "0"
    if not token.isdigit():
        raise errors.bad_request(f"The $skiptoken '{token}' is not valid.")
    skip = int(token)
    audit = c.services.audit
    await audit.flushed(timeout=1.0)
    found = await audit.store.list(sub, where, skip, PAGE + 1)
    page = found[:PAGE]
    select = [s.strip() for s in (query.get("$select") or "").split(",") if s.strip()]
    if select:
        page = [{k: v for k, v in e.items() if k in select} for e in page]
    body: dict = {"value": page}
    if len(found) > PAGE:
        params = {k: v for k, v in query.items() if k != "$skiptoken"}
        params["$skiptoken"] = str(skip + PAGE)
        body["nextLink"] = f"{c.base_url}{c.request.path}?{urlencode(params)}"
    return arm_json(body)


def add_routes(r: ArmRouter) -> None:
    r.add("GET", VALUES, list_events)
