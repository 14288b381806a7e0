"""Diagnostic settings of an account, and the query side of the workspace stand-in.

ARM, as Azure Monitor serves them (api-version 2021-05-01-preview):

    PUT    {acct}/providers/Microsoft.Insights/diagnosticSettings/{name}   200 DiagnosticSettingsResource
    GET    {acct}/providers/Microsoft.Insights/diagnosticSettings/{name}   200, or 404 ResourceNotFound
    DELETE {acct}/providers/Microsoft.Insights/diagnosticSettings/{name}   200, or 204 when there was none
    GET    {acct}/providers/Microsoft.Insights/diagnosticSettings          {"value": [...]}

PUT answers 200 for a new setting too, as the spec lists only 200. Errors
use Azure Monitor's flat body (lapis.diagnostics.errors). What the
properties may hold, and where each destination leads on this machine, is in
lapis.diagnostics.settings.

Log Analytics, through ARM (Azure serves the workspace query API there too):

    GET {workspaceId}/api/query?api-version=2017-01-01-preview&query=<KQL>&timespan=PT1H
        {"tables": [{"name": "PrimaryResult", "columns": [...], "rows": [...]}]}

Lapis has no workspace resource: any well-formed workspace id in an existing
subscription names a folder of JSON-lines tables, empty until a diagnostic
setting writes there. The query language is lapis.diagnostics.query's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from lapis.audit.recorder import ARM_CALLER
from lapis.diagnostics import errors, query
from lapis.diagnostics.settings import SETTING_TYPE, DiagnosticSetting, check_residency, read_properties
from lapis.identity.service import account_arm_id
from lapis.management import accounts, tenancy
from lapis.management.routes import ACCT, Ctx, arm_json
from lapis.management.router import ArmRouter

SETTINGS = f"{ACCT}/providers/Microsoft.Insights/diagnosticSettings"
WORKSPACE = ("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/workspaces/{workspace}"
             "/api/query")
_BAD_NAME = set('<>%&:\\?/#*')


def setting_json(setting: DiagnosticSetting) -> dict[str, Any]:
    return {
        "id": setting.id, "type": SETTING_TYPE, "name": setting.name, "properties": setting.properties,
        "systemData": {"createdBy": setting.created_by, "createdByType": _by_type(setting.created_by),
                       "createdAt": setting.created_at, "lastModifiedBy": setting.updated_by,
                       "lastModifiedByType": _by_type(setting.updated_by), "lastModifiedAt": setting.updated_at},
    }


def _by_type(who: str | None) -> str | None:
    if not who:
        return None
    return "User" if "@" in who else "Application"


async def _account(c: Ctx) -> Any:
    return await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))


async def list_settings(c: Ctx) -> web.Response:
    account = await _account(c)
    found = await c.services.diagnostics.store.for_account(account.id)
    return arm_json({"value": [setting_json(s) for s in found]})


async def get_setting(c: Ctx) -> web.Response:
    account = await _account(c)
    found = await c.services.diagnostics.store.get(account.id, c.p("name"))
    if found is None:
        raise errors.setting_not_found(c.p("name"))
    return arm_json(setting_json(found))


async def put_setting(c: Ctx) -> web.Response:
    account = await _account(c)
    name = c.p("name")
    if len(name) > 260 or _BAD_NAME & set(name):
        raise errors.bad_request(f"The diagnostic setting name '{name}' is invalid: at most 260 characters, none "
                                 "of < > % & : \\ ? / # *.")
    properties = read_properties(c.body)
    caller = c.request.get(ARM_CALLER)
    by = getattr(caller, "name", None)
    when = tenancy.now()
    setting = DiagnosticSetting(account_id=account.id, name=name,
                                resource_id=account_arm_id(account.subscription_id, account.group, account.name),
                                location=account.location, properties=properties, created_at=when, created_by=by,
                                updated_at=when, updated_by=by)
    diagnostics = c.services.diagnostics
    others = [s for s in await diagnostics.store.all()
              if not (s.account_id == account.id and s.name.lower() == name.lower())]
    check_residency(setting, others)
    await diagnostics.store.put(setting)
    await diagnostics.reload()
    return arm_json(setting_json(setting))


async def delete_setting(c: Ctx) -> web.Response:
    account = await _account(c)
    removed = await c.services.diagnostics.store.delete(account.id, c.p("name"))
    await c.services.diagnostics.reload()
    return web.Response(status=200 if removed else 204)


async def query_workspace(c: Ctx) -> web.Response:
    await tenancy.require_subscription(c.services, c.p("sub"))
    text = c.request.query.get("query")
    if not text:
        raise errors.invalid_query("The 'query' parameter is required.")
    files = c.services.diagnostics.workspace_files(c.p("sub"), c.p("rg"), c.p("workspace"))
    # the files are read in a worker thread: a large workspace must not stall the event loop
    return arm_json(await asyncio.to_thread(query.run, text, files.rows, c.request.query.get("timespan")))


def add_routes(r: ArmRouter) -> None:
    r.add("GET", SETTINGS, list_settings)
    for method, handler in (("PUT", put_setting), ("GET", get_setting), ("DELETE", delete_setting)):
        r.add(method, f"{SETTINGS}/{{name}}", handler)
    r.add("GET", WORKSPACE, query_workspace)
