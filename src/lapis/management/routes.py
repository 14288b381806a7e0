"""ARM routes: HTTP in, service call, ARM JSON out. No logic beyond that.

Every ARM request needs `Authorization: Bearer <token>` (the local admin
credential until Entra tokens arrive, issue #4) and `api-version` (any value:
real clients send anything from 2021-04-01 to 2026-05-15-preview).
Long-running operations finish inside the request: PUT answers 200/201 with
provisioningState "Succeeded" and no polling header, which every ARM poller
takes as done without another request (real-clients.md §5).
"""

from __future__ import annotations

import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lapis.requestkeys import state_of
from lapis.audit.recorder import ARM_CALLER
from lapis.auth import routes as rbac_routes
from lapis.auth.actions import arm_permission
from lapis.errors import ApiError
from lapis.errors import catalogue as errors
from lapis.management import accounts, deployments, shapes, tenancy
from lapis.management.bodies import read_json
from lapis.management.router import ArmRouter
from lapis.identity.service import verify_bearer
from lapis.identity.tokens import MANAGEMENT_AUDIENCES, InvalidToken
from lapis.services import ADMIN_PRINCIPAL, Services

ACCT = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{account}"
SUBP = "/subscriptions/{sub}/providers/Microsoft.CognitiveServices"


@dataclass(slots=True)
class Ctx:
    services: Services
    request: web.Request
    params: dict[str, str]
    body: dict[str, Any]

    def p(self, name: str) -> str:
        return self.params[name]

    @property
    def base_url(self) -> str:
        return self.services.settings.base_url


def arm_json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        content_type="application/json", charset="utf-8")


# -- subscriptions, providers, groups ---------------------------------------

async def list_subscriptions(c: Ctx) -> web.Response:
    subs = await c.services.store.subscriptions()
    return arm_json({"value": [shapes.subscription(s) for s in subs]})


async def get_subscription(c: Ctx) -> web.Response:
    return arm_json(shapes.subscription(await tenancy.require_subscription(c.services, c.p("sub"))))


async def get_provider(c: Ctx) -> web.Response:
    await tenancy.require_subscription(c.services, c.p("sub"))
    tenancy.require_namespace(c.p("ns"))
    state = await c.services.store.registration(c.p("sub"), c.p("ns"))
    return arm_json(shapes.provider(c.p("sub"), state, c.services.catalogue))


async def register_provider(c: Ctx) -> web.Response:
    state = await tenancy.register(c.services, c.p("sub"), c.p("ns"))
    return arm_json(shapes.provider(c.p("sub"), state, c.services.catalogue))


async def unregister_provider(c: Ctx) -> web.Response:
    state = await tenancy.unregister(c.services, c.p("sub"), c.p("ns"))
    return arm_json(shapes.provider(c.p("sub"), state, c.services.catalogue))


async def list_groups(c: Ctx) -> web.Response:
    await tenancy.require_subscription(c.services, c.p("sub"))
    groups = await c.services.store.groups(c.p("sub"))
    return arm_json({"value": [shapes.resource_group(g) for g in groups]})


async def put_group(c: Ctx) -> web.Response:
    group, created = await tenancy.put_group(c.services, c.p("sub"), c.p("rg"), c.body.get("location"),
                                             c.body.get("tags") or {})
    return arm_json(shapes.resource_group(group), 201 if created else 200)


async def get_group(c: Ctx) -> web.Response:
    return arm_json(shapes.resource_group(await tenancy.require_group(c.services, c.p("sub"), c.p("rg"))))


async def head_group(c: Ctx) -> web.Response:
    found = await c.services.store.group(c.p("sub"), c.p("rg"))
    return web.Response(status=204 if found else 404)


async def delete_group(c: Ctx) -> web.Response:
    await tenancy.delete_group(c.services, c.p("sub"), c.p("rg"))
    return web.Response(status=200)


# -- accounts ----------------------------------------------------------------

async def _accounts_json(c: Ctx, *found: Any) -> list[dict[str, Any]]:
    """shapes.account, each with its private endpoint connections (lapis.network)."""
    links = await c.services.private_endpoints.connections(list(found))
    return [shapes.account(a, c.base_url, links.get(a.id)) for a in found]


async def list_accounts(c: Ctx) -> web.Response:
    await tenancy.require_subscription(c.services, c.p("sub"))
    group = c.params.get("rg")
    if group is not None:
        await tenancy.require_group(c.services, c.p("sub"), group)
    found = await c.services.store.accounts(c.p("sub"), group)
    return arm_json({"value": await _accounts_json(c, *found)})


async def put_account(c: Ctx) -> web.Response:
    account, created = await accounts.put(c.services, c.p("sub"), c.p("rg"), c.p("account"), c.body)
    return arm_json((await _accounts_json(c, account))[0], 201 if created else 200)


async def patch_account(c: Ctx) -> web.Response:
    account = await accounts.patch(c.services, c.p("sub"), c.p("rg"), c.p("account"), c.body)
    return arm_json((await _accounts_json(c, account))[0])


async def get_account(c: Ctx) -> web.Response:
    account = await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))
    return arm_json((await _accounts_json(c, account))[0])


async def delete_account(c: Ctx) -> web.Response:
    deleted = await accounts.delete(c.services, c.p("sub"), c.p("rg"), c.p("account"))
    return web.Response(status=200 if deleted else 204)


async def list_keys(c: Ctx) -> web.Response:
    account = await accounts.require_keys(c.services, c.p("sub"), c.p("rg"), c.p("account"))
    return arm_json({"key1": account.key1, "key2": account.key2})


async def regenerate_key(c: Ctx) -> web.Response:
    account = await accounts.regenerate(c.services, c.p("sub"), c.p("rg"), c.p("account"), c.body.get("keyName"))
    return arm_json({"key1": account.key1, "key2": account.key2})


async def account_models(c: Ctx) -> web.Response:
    account = await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))
    return arm_json(shapes.account_models(c.services.catalogue, account.location))


async def location_models(c: Ctx) -> web.Response:
    await tenancy.require_subscription(c.services, c.p("sub"))
    location = c.p("location").replace(" ", "").lower()
    return arm_json(shapes.location_models(c.services.catalogue, location))


# -- deployments -------------------------------------------------------------

async def list_deployments(c: Ctx) -> web.Response:
    account = await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))
    found = await c.services.store.deployments(account.id)
    return arm_json({"value": [shapes.deployment(d, account, c.services.catalogue) for d in found]})


async def put_deployment(c: Ctx) -> web.Response:
    account, dep, created = await deployments.put(c.services, c.p("sub"), c.p("rg"), c.p("account"),
                                                  c.p("deployment"), c.body)
    return arm_json(shapes.deployment(dep, account, c.services.catalogue), 201 if created else 200)


async def patch_deployment(c: Ctx) -> web.Response:
    account, dep = await deployments.patch(c.services, c.p("sub"), c.p("rg"), c.p("account"), c.p("deployment"),
                                           c.body)
    return arm_json(shapes.deployment(dep, account, c.services.catalogue))


async def get_deployment(c: Ctx) -> web.Response:
    account, dep = await deployments.require(c.services, c.p("sub"), c.p("rg"), c.p("account"), c.p("deployment"))
    return arm_json(shapes.deployment(dep, account, c.services.catalogue))


async def delete_deployment(c: Ctx) -> web.Response:
    deleted = await deployments.delete(c.services, c.p("sub"), c.p("rg"), c.p("account"), c.p("deployment"))
    return web.Response(status=200 if deleted else 204)


def build_router() -> ArmRouter:
    r = ArmRouter()
    r.add("GET", "/subscriptions", list_subscriptions)
    r.add("GET", "/subscriptions/{sub}", get_subscription)
    r.add("GET", f"{SUBP}/accounts", list_accounts)
    r.add("GET", f"{SUBP}/locations/{{location}}/models", location_models)
    r.add("GET", "/subscriptions/{sub}/providers/{ns}", get_provider)
    r.add("POST", "/subscriptions/{sub}/providers/{ns}/register", register_provider)
    r.add("POST", "/subscriptions/{sub}/providers/{ns}/unregister", unregister_provider)
    r.add("GET", "/subscriptions/{sub}/resourceGroups", list_groups)
    for method, handler in (("PUT", put_group), ("GET", get_group), ("HEAD", head_group), ("DELETE", delete_group)):
        r.add(method, "/subscriptions/{sub}/resourceGroups/{rg}", handler)
    r.add("GET", "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts",
          list_accounts)
    for method, handler in (("PUT", put_account), ("PATCH", patch_account), ("GET", get_account),
                            ("DELETE", delete_account)):
        r.add(method, ACCT, handler)
    r.add("POST", f"{ACCT}/listKeys", list_keys)
    r.add("POST", f"{ACCT}/regenerateKey", regenerate_key)
    r.add("GET", f"{ACCT}/models", account_models)
    r.add("GET", f"{ACCT}/deployments", list_deployments)
    for method, handler in (("PUT", put_deployment), ("PATCH", patch_deployment), ("GET", get_deployment),
                            ("DELETE", delete_deployment)):
        r.add(method, f"{ACCT}/deployments/{{deployment}}", handler)
    from lapis.management import activity_log, diagnostic_settings, private_endpoints, quota_routes  # build on Ctx

    quota_routes.add_routes(r)
    private_endpoints.add_routes(r)
    diagnostic_settings.add_routes(r)
    activity_log.add_routes(r)
    return r


def check_admin(services: Services, request: web.Request) -> None:
    """The local admin credential as a bearer token (constant-time compare);
    for Lapis's own /lapis/admin API."""
    header = request.headers.get("Authorization")
    if not header:
        raise errors.arm_missing_auth()
    scheme, _, token = header.partition(" ")
    presented = token.strip().encode("utf-8", "surrogateescape")  # header bytes that were not UTF-8 match nothing
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, services.admin_token.encode()):
        raise errors.arm_invalid_token()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent an ARM request: the local admin (Owner of everything), or the
    principal of an Entra token for the management audience."""

    admin: bool
    oid: str = ""
    name: str = ADMIN_PRINCIPAL


async def authenticate(services: Services, request: web.Request) -> Caller:
    header = request.headers.get("Authorization")
    if not header:
        raise errors.arm_missing_auth()
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.arm_invalid_token()
    if hmac.compare_digest(token.encode("utf-8", "surrogateescape"), services.admin_token.encode()):
        return Caller(admin=True)
    try:
        claims = await verify_bearer(services, token, MANAGEMENT_AUDIENCES)
    except InvalidToken:
        raise errors.arm_invalid_token() from None
    return Caller(admin=False, oid=claims.oid, name=claims.appid or claims.oid)


async def authorize(services: Services, caller: Caller, request: web.Request) -> None:
    """Token callers need the route's action at its scope (ARM's 403 otherwise)."""
    if caller.admin:
        return
    permission = arm_permission(request.method, request.path)
    if permission is not None and not await services.authorizer.allowed_action(caller.oid, permission.action,
                                                                               permission.scope):
        raise errors.authorization_failed(caller.name, caller.oid, permission.action, permission.scope)


class ArmApp:
    """Dispatches every ARM request through the case-insensitive router."""

    def __init__(self, services: Services):
        self.services = services
        self.router = build_router()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # -- audit hook (lapis.audit): every write and every denial lands in the Activity Log
        audit = self.services.audit
        if audit is None:
            return await self._dispatch(request)
        return await audit.around(request, self._dispatch)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        caller = await authenticate(self.services, request)
        request[ARM_CALLER] = caller  # who, for the audit hook
        await authorize(self.services, caller, request)
        authorization = await rbac_routes.handle(self.services, request, self.services.authorizer,
                                                 principal=caller.oid or caller.name)
        if authorization is not None:
            return authorization
        route, params, known = self.router.match(request.method, request.path)
        if route is None:
            if known:
                raise errors.arm(405, "MethodNotAllowed",
                                 f"The requested resource does not support http method '{request.method}'.")
            raise errors.arm_no_route(request.method, request.path)
        if not request.query.get("api-version"):
            raise errors.arm_missing_api_version()
        body = await read_json(request) if request.method in ("PUT", "PATCH", "POST") else {}
        response = await route.handler(Ctx(self.services, request, params, body))
        response.headers.setdefault("x-ms-request-id", state_of(request).request_id or str(uuid.uuid4()))
        response.headers.setdefault("x-ms-correlation-request-id", request.headers.get(
            "x-ms-correlation-request-id", state_of(request).request_id))
        return response


def arm_error_response(error: ApiError) -> web.Response:
    response = web.Response(body=error.body, status=error.status, content_type="application/json",
                            charset="utf-8")
    response.headers["x-ms-failure-cause"] = "gateway" if error.status == 401 else "service"
    response.headers["x-ms-error-code"] = error.code
    response.headers.update(error.headers)
    return response
