"""Backends, pools and faults: the checks and writes behind the serving admin API.

Route handlers (serving_routes) call these; each write is committed through
lapis.store.serving and then `Services.refresh_serving()` rebuilds the
serving view here and on the other replicas.

Where Lapis chose (Azure has no such API; pinned by tests/integration/test_serving_admin.py):
- Backend ids, pool names and member ids are case-insensitive and keep the
  case they were created with; they hold letters, digits, '.', '_', '-'.
- A backend's region must be a catalogue location and its model a catalogue
  model; fields that do not apply to its kind are refused, not ignored.
- Secrets: a PUT that names no secret (`apiKey` and `auth.clientSecret` absent or null)
  keeps the stored one when the kind and the way of authenticating (key or
  client credentials) are unchanged; `"apiKey": ""` removes it.
- One pool per deployment, and the deployment must exist (404 NotFound with
  its id) in the pool's subscription. Member deployments and backends must
  exist too. A pool may list the deployment it serves: that member is the
  deployment's own engines (lapis.serving.plans never serves a member
  through a pool, so there is no loop). A backend that is a pool member
  cannot be deleted (409 Conflict).
- Member faults name a member key (`backend:<id>`, `sim:<region>`,
  `member:<pool>/<member id>`) whose backend, region or member must exist; the
  key is stored with the names' canonical case. A fault replaces the
  previous one of the same scope and target, and must do something.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lapis.errors import catalogue as errors
from lapis.management import shapes, tenancy
from lapis.management.serving_bodies import (check_name, deployment_parts, flag, integer, invalid, number, obj,
                                             one_of, text, url)
from lapis.serving.specs import BACKEND_KINDS, FAULT_SCOPES, MEMBER_KINDS, BackendSpec, FaultSpec, MemberSpec, PoolSpec
from lapis.services import DEFAULT_SUBSCRIPTION, Services
from lapis.store.serving import DeploymentServed, ServingStore

AZURE_API_VERSION = "2024-10-21"  # sent to an azure backend that names none (the latest GA api-version)
_APPLIES = {  # optional backend fields, by the kinds they apply to
    "url": ("openai-compatible", "azure"), "upstreamModel": ("openai-compatible",),
    "deployment": ("azure",), "apiVersion": ("azure",), "apiKey": ("openai-compatible", "azure"),
    "auth": ("azure",),
}
_EFFECTS = "rate429, rate503, latencyMs, hang, cutAfter or down"


def store(services: Services) -> ServingStore:
    return ServingStore(services.store.db, services.store.keyring)


def not_found(path: str) -> errors.ApiError:
    return errors.arm_resource_missing(path)


def region(services: Services, value: str, key: str = "region") -> str:
    location = value.replace(" ", "").lower()
    if not location or services.catalogue.region_display(location) is None:
        raise invalid(f"The value '{value}' of '{key}' is invalid. List of available regions is "
                      f"'{','.join(sorted(services.catalogue.regions))}'.")
    return location


# -- backends ------------------------------------------------------------------

async def require_backend(services: Services, backend_id: str) -> BackendSpec:
    found = await store(services).backend(backend_id)
    if found is None:
        raise not_found(f"/lapis/admin/backends/{backend_id}")
    return found


def _secret(body: dict[str, Any], auth: dict[str, Any] | None, kind: str, existing: BackendSpec | None) -> str:
    """The secret given (null counts as not given), else the stored one if it still fits."""
    if auth is not None and auth.get("clientSecret") is not None:
        return text(auth, "clientSecret")
    if body.get("apiKey") is not None:
        return text(body, "apiKey")
    if existing is not None and existing.kind == kind and bool(existing.auth) == (auth is not None):
        return existing.secret
    return ""


def backend_from_body(services: Services, backend_id: str, body: dict[str, Any],
                      existing: BackendSpec | None) -> BackendSpec:
    check_name("backend id", backend_id)
    kind = one_of(body, "kind", BACKEND_KINDS)
    for key, kinds in _APPLIES.items():
        if kind not in kinds and body.get(key) not in (None, "", {}):
            raise invalid(f"The property '{key}' does not apply to a backend of kind '{kind}'.")
    location = region(services, text(body, "region", "for a backend"))
    model_name = text(body, "model", "for a backend")
    model = services.catalogue.model(model_name)
    if model is None:
        raise invalid(f"The model '{model_name}' is not in the catalogue; "
                      "`lapis cognitiveservices model list --location <region>` lists the models.")
    auth_body = obj(body, "auth")
    auth: dict[str, str] = {}
    if auth_body is not None:
        if body.get("apiKey") is not None:
            raise invalid("Give either 'apiKey' or 'auth' (client credentials), not both.")
        auth = {"tenant": text(auth_body, "tenant", "in 'auth'"), "client_id": text(auth_body, "clientId", "in 'auth'"),
                "authority": text(auth_body, "authority")}
    secret = _secret(body, auth_body, kind, existing)
    if auth_body is not None and not secret:
        raise invalid("The property 'clientSecret' is required in 'auth'.")
    if kind == "azure" and not secret:
        raise invalid("A backend of kind 'azure' needs 'apiKey' or 'auth' with tenant, clientId and clientSecret.")
    spec = BackendSpec(id=existing.id if existing else backend_id, region=location, model=model.name, kind=kind,
                       timeout_s=number(body, "timeoutSeconds", 60.0, 0, above_low=True),
                       weight=integer(body, "weight", 1, 1))
    if kind == "openai-compatible":
        return replace(spec, url=url(body, "url", kind), upstream_model=text(body, "upstreamModel") or model.name,
                       secret=secret)
    if kind == "azure":
        return replace(spec, url=url(body, "url", kind), deployment=text(body, "deployment", f"for a backend of "
                                                                         f"kind '{kind}'"),
                       api_version=text(body, "apiVersion") or AZURE_API_VERSION, auth=auth, secret=secret)
    return spec


async def put_backend(services: Services, backend_id: str, body: dict[str, Any]) -> tuple[BackendSpec, bool]:
    existing = await store(services).backend(backend_id)
    spec = backend_from_body(services, backend_id, body, existing)
    created = await store(services).put_backend(spec)
    await services.refresh_serving()
    return spec, created


async def delete_backend(services: Services, backend_id: str) -> bool:
    users = await store(services).pools_with_backend(backend_id)
    if users:
        names = ", ".join(f"'{name}'" for _sub, name in users)
        raise errors.arm(409, "Conflict", f"The backend '{backend_id}' is a member of the pool(s) {names}; "
                                          "remove it from them first.")
    deleted = await store(services).delete_backend(backend_id)
    await services.refresh_serving()
    return deleted


# -- pools and members -------------------------------------------------------------

async def require_deployment(services: Services, value: str, where: str) -> str:
    """The canonical ARM id of an existing deployment; 400 when `value` is no
    deployment id, ARM's 404 NotFound when there is no such deployment."""
    sub, group, account_name, name = deployment_parts(value, where)
    account = await services.store.account(sub.lower(), group, account_name)
    found = await services.store.deployment(account.id, name) if account else None
    if account is None or found is None:
        raise errors.arm_resource_missing(value)
    return f"{shapes.account_id(account)}/deployments/{found.name}"


async def subscription(services: Services, value: str | None) -> str:
    """The pools' subscription: `?subscription=`, else the local one; 404 when unknown."""
    sub = (value or "").strip().lower() or DEFAULT_SUBSCRIPTION
    await tenancy.require_subscription(services, sub)
    return sub


async def require_pool(services: Services, sub: str, name: str) -> PoolSpec:
    found = await store(services).pool(name, sub)
    if found is None:
        raise not_found(f"/lapis/admin/pools/{name}")
    return found


async def member_from_body(services: Services, member_id: str, body: dict[str, Any]) -> MemberSpec:
    check_name("member id", member_id)
    kind = one_of(body, "kind", MEMBER_KINDS)
    target = text(body, "target", "for a pool member")
    if kind == "deployment":
        target = await require_deployment(services, target, "target")
    else:
        target = (await require_backend(services, target)).id
    return MemberSpec(id=member_id, kind=kind, target=target, priority=integer(body, "priority", 1, 0),
                      weight=integer(body, "weight", 1, 1))


async def put_pool(services: Services, sub: str, name: str, body: dict[str, Any]) -> tuple[PoolSpec, bool]:
    """Create or replace a pool; members are replaced when the body lists them, kept otherwise."""
    check_name("pool name", name)
    existing = await store(services).pool(name, sub)
    deployment_id = await require_deployment(services, text(body, "deploymentId", "for a pool"), "deploymentId")
    if deployment_parts(deployment_id, "deploymentId")[0].lower() != sub:
        raise invalid(f"The deployment '{deployment_id}' is not in the pool's subscription '{sub}'; "
                      "name the subscription with ?subscription=.")
    raw = body.get("members")
    if raw is None:
        members = existing.members if existing else ()
    elif not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise invalid("The value of 'members' must be an array of objects.")
    else:
        members = tuple([await member_from_body(services, text(m, "id", "for a pool member"), m)
                         for m in raw])
        ids = [m.id.lower() for m in members]
        if len(set(ids)) != len(ids):
            raise invalid("The member ids of a pool must be unique.")
    spec = PoolSpec(name=existing.name if existing else name, subscription_id=sub, deployment_id=deployment_id,
                    members=members)
    try:
        created = await store(services).put_pool(spec)
    except DeploymentServed as served:
        raise errors.arm(409, "Conflict", f"The deployment '{deployment_id}' is already served by the pool "
                                          f"'{served.args[0]}'.") from None
    await services.refresh_serving()
    return await require_pool(services, sub, spec.name), created  # as stored: members by priority


async def delete_pool(services: Services, sub: str, name: str) -> bool:
    deleted = await store(services).delete_pool(name, sub)
    await services.refresh_serving()
    return deleted


async def put_member(services: Services, sub: str, pool_name: str, member_id: str,
                     body: dict[str, Any]) -> tuple[PoolSpec, bool]:
    pool = await require_pool(services, sub, pool_name)
    member = await member_from_body(services, member_id, body)
    created = await store(services).put_member(pool.name, sub, member)
    if created is None:  # deleted meanwhile
        raise not_found(f"/lapis/admin/pools/{pool_name}")
    await services.refresh_serving()
    return await require_pool(services, sub, pool_name), created


async def delete_member(services: Services, sub: str, pool_name: str, member_id: str) -> bool:
    pool = await require_pool(services, sub, pool_name)
    deleted = await store(services).delete_member(pool.name, sub, member_id)
    await services.refresh_serving()
    return deleted


# -- faults --------------------------------------------------------------------------

async def fault_target(services: Services, scope: str, target: str) -> str:
    """The target in canonical form: a location, or a member key whose referent exists."""
    if scope == "region":
        return region(services, target, "target")
    prefix, _, rest = target.partition(":")
    if prefix == "backend" and rest:
        return f"backend:{(await require_backend(services, rest)).id}"
    if prefix == "sim" and rest:
        return f"sim:{region(services, rest, 'target')}"
    pool_name, _, member_id = rest.partition("/")
    if prefix == "member" and pool_name and member_id:
        for pool in await store(services).pools():
            if pool.name.lower() == pool_name.lower():
                for member in pool.members:
                    if member.id.lower() == member_id.lower():
                        return f"member:{pool.name}/{member.id}"
        raise not_found(f"/lapis/admin/pools/{pool_name}/members/{member_id}")
    raise invalid(f"The member key '{target}' is invalid. Write backend:<backend id>, sim:<region> or "
                  "member:<pool>/<member id>.")


def check_scope(scope: str) -> str:
    if scope not in FAULT_SCOPES:
        raise invalid(f"The value '{scope}' of 'scope' is invalid. Valid values are "
                      f"{', '.join(repr(s) for s in FAULT_SCOPES)}.")
    return scope


async def put_fault(services: Services, scope: str, target: str, body: dict[str, Any]) -> tuple[FaultSpec, bool]:
    check_scope(scope)
    spec = FaultSpec(
        scope=scope, target=await fault_target(services, scope, target),
        rate_429=number(body, "rate429", 0.0, 0, 1), rate_503=number(body, "rate503", 0.0, 0, 1),
        retry_after_s=number(body, "retryAfterSeconds", 1.0, 0), latency_ms=number(body, "latencyMs", 0.0, 0),
        hang=flag(body, "hang"), down=flag(body, "down"),
        cut_after=None if body.get("cutAfter") is None else integer(body, "cutAfter", 0, 0),
    )
    if spec.rate_429 + spec.rate_503 > 1 + 1e-9:  # as lapis.serving.faults.check_fault
        raise invalid("The shares 'rate429' and 'rate503' add up to more than 1.")
    if not (spec.rate_429 or spec.rate_503 or spec.latency_ms or spec.hang or spec.down
            or spec.cut_after is not None):
        raise invalid(f"The fault does nothing: give at least one of {_EFFECTS}.")
    created = await store(services).put_fault(spec)
    await services.refresh_serving()
    return spec, created


async def delete_fault(services: Services, scope: str, target: str) -> bool:
    check_scope(scope)
    deleted = await store(services).delete_fault(scope, target)
    await services.refresh_serving()
    return deleted


async def reset_faults(services: Services) -> int:
    removed = await store(services).reset_faults()
    await services.refresh_serving()
    return removed
