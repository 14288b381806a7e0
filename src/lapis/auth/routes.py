"""ARM routes of Microsoft.Authorization: role assignments and role definitions.

    PUT|GET|DELETE {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}
    GET            {scope}/providers/Microsoft.Authorization/roleAssignments[?$filter=...]
    GET            {scope}/providers/Microsoft.Authorization/roleDefinitions[/{guid}][?$filter=roleName eq '...']

`{scope}` is a subscription, a resource group or a resource (§7.2), matched
case-insensitively. `handle()` answers these paths and returns None for any
other, so ArmApp can try it first. The caller authenticates and authorizes
(`lapis.auth.actions.arm_permission`); `handle` checks api-version, the body
and the scope, and raises ApiError values ArmApp already renders.

Re-PUT semantics (§7.2): the same name with the same role, principal and scope
answers 200 (deployments re-run with deterministic names); another name for
an existing (scope, role, principal) is 409 RoleAssignmentExists; the same
name with other properties is 400 RoleAssignmentUpdateNotPermitted.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from lapis.auth import rbac
from lapis.auth.rbac import Authorizer, RoleDefinition
from lapis.auth.store import CHANGED_CHANNEL, AssignmentExists, AssignmentStore, RoleAssignment
from lapis.errors import catalogue as errors
from lapis.management.bodies import read_json

_AUTH = r"^(?P<scope>.*?)/providers/Microsoft\.Authorization/"
_ASSIGNMENTS = re.compile(_AUTH + r"roleAssignments(?:/(?P<name>[^/]+))?/?$", re.IGNORECASE)
_DEFINITIONS = re.compile(_AUTH + r"roleDefinitions(?:/(?P<name>[^/]+))?/?$", re.IGNORECASE)
_PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")
_EQ = re.compile(r"^(\w+)\s+eq\s+'([^']*)'$", re.IGNORECASE)
_ASSIGNED_TO = re.compile(r"^assignedTo\('([^']*)'\)$", re.IGNORECASE)
TYPE = "Microsoft.Authorization/roleAssignments"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json",
                        charset="utf-8")


def _guid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None


def assignment_body(a: RoleAssignment) -> dict[str, Any]:
    """ARM's roleAssignment (api-version 2022-04-01), roleDefinitionId with its /subscriptions prefix."""
    role = rbac.role_by_id(a.role_definition_id)
    role_id = (role.resource_id(rbac.subscription_of(a.scope)) if role else
               rbac.ROLE_DEFINITIONS_PATH + a.role_definition_id)
    return {
        "properties": {
            "roleDefinitionId": role_id, "principalId": a.principal_id, "principalType": a.principal_type,
            "scope": a.scope, "condition": None, "conditionVersion": None, "createdOn": a.created_at,
            "updatedOn": a.created_at, "createdBy": a.created_by, "updatedBy": a.created_by,
            "delegatedManagedIdentityResourceId": None, "description": None,
        },
        "id": f"{a.scope}/providers/{TYPE}/{a.id}", "type": TYPE, "name": a.id,
    }


async def _require_scope(services: Any, scope: str) -> None:
    """The scope names a subscription, group or account that exists (ARM's 404s otherwise)."""
    if not rbac.is_valid_scope(scope):
        raise errors.invalid_role_assignment_scope(scope)
    from lapis.management import accounts, tenancy  # here: management may import this module

    parts = rbac.normalize_scope(scope).strip("/").split("/")
    if len(parts) == 2:
        await tenancy.require_subscription(services, parts[1])
    elif len(parts) == 4:
        await tenancy.require_group(services, parts[1], parts[3])
    elif parts[4].lower() == "providers" and f"{parts[5]}/{parts[6]}".lower() == "microsoft.cognitiveservices/accounts":
        await accounts.require(services, parts[1], parts[3], parts[7])
    else:
        await tenancy.require_group(services, parts[1], parts[3])


def _parse_filter(value: str | None) -> dict[str, Any]:
    """$filter for role assignments: principalId eq '…', assignedTo('…'), atScope(), joined by `and`."""
    options: dict[str, Any] = {}
    for clause in re.split(r"\s+and\s+", (value or "").strip(), flags=re.IGNORECASE) if value else []:
        eq, assigned = _EQ.match(clause.strip()), _ASSIGNED_TO.match(clause.strip())
        if clause.strip().lower() == "atscope()":
            options["below"] = False
        elif eq and eq.group(1).lower() == "principalid":
            options["principal_id"] = eq.group(2)
        elif assigned:
            options["principal_id"] = assigned.group(1)
        else:
            raise errors.unsupported_filter(value or "")
    return options


class _Context:
    def __init__(self, services: Any, authorizer: Authorizer | None, principal: str):
        self.services, self.authorizer, self.principal = services, authorizer, principal
        self.store = AssignmentStore(services.store.db)

    async def changed(self, principal_id: str) -> None:
        """Take effect at once here, and on the other replicas as soon as they hear (else within 5 s)."""
        if self.authorizer is not None:
            self.authorizer.invalidate(principal_id)
        await self.store.db.notify(CHANGED_CHANNEL, principal_id)


async def _put(c: _Context, scope: str, name: str, request: web.Request) -> web.Response:
    props = (await read_json(request)).get("properties")
    if not isinstance(props, dict):
        raise errors.arm_bad_request("The request content was invalid: 'properties' is required.")
    role_ref = props.get("roleDefinitionId")
    role = rbac.role_by_id(role_ref) if isinstance(role_ref, str) else None
    if role is None:
        raise errors.role_definition_not_found(str(role_ref).rstrip("/").rsplit("/", 1)[-1], 400)
    principal = _guid(props.get("principalId"))
    if principal is None:
        raise errors.invalid_principal_id()
    principal_type = props.get("principalType") or "User"
    if principal_type not in _PRINCIPAL_TYPES:
        raise errors.arm_bad_request(f"The principal type '{principal_type}' is not valid. Valid values are "
                                     f"{', '.join(_PRINCIPAL_TYPES)}.", "InvalidPrincipalType")
    await _require_scope(c.services, scope)
    existing = await c.store.get(name)
    if existing is not None:
        same = (rbac.scope_key(existing.scope) == rbac.scope_key(scope) and existing.principal_id == principal
                and existing.role_definition_id == role.id)
        if not same:
            raise errors.role_assignment_update_not_permitted()
        return _json(assignment_body(existing), 200)
    try:
        created = await c.store.create(RoleAssignment(id=name, scope=rbac.normalize_scope(scope),
                                                      role_definition_id=role.id, principal_id=principal,
                                                      principal_type=principal_type, created_at=_now(),
                                                      created_by=c.principal))
    except AssignmentExists:
        raise errors.role_assignment_exists() from None
    await c.changed(principal)
    return _json(assignment_body(created), 201)


async def _assignments(c: _Context, request: web.Request, scope: str, name: str | None) -> web.Response:
    method = request.method.upper()
    if name is None:
        if method != "GET":
            raise _method_not_allowed(method)
        if not rbac.is_valid_scope(scope):
            raise errors.invalid_role_assignment_scope(scope)
        found = await c.store.list(scope, **_parse_filter(request.query.get("$filter")))
        return _json({"value": [assignment_body(a) for a in found]})
    guid = _guid(name)
    if guid is None:
        raise errors.invalid_role_assignment_id(name)
    if method == "PUT":
        return await _put(c, scope, guid, request)
    existing = await c.store.get(guid)
    if existing is not None and rbac.scope_key(existing.scope) != rbac.scope_key(scope):
        existing = None
    if method == "GET":
        if existing is None:
            raise errors.role_assignment_not_found(guid)
        return _json(assignment_body(existing))
    if method == "DELETE":
        if existing is None or await c.store.delete(guid) is None:
            return web.Response(status=204)
        await c.changed(existing.principal_id)
        return _json(assignment_body(existing))
    raise _method_not_allowed(method)


def _definitions(request: web.Request, scope: str, name: str | None) -> web.Response:
    if request.method.upper() != "GET":
        raise _method_not_allowed(request.method)
    sub = rbac.subscription_of(scope) if scope else None
    if name is not None:
        role = rbac.role_by_id(name)
        if role is None:
            raise errors.role_definition_not_found(name)
        return _json(role.to_arm(sub))
    roles: list[RoleDefinition] = list(rbac.builtin_roles())
    query = (request.query.get("$filter") or "").strip()
    if query:
        eq = _EQ.match(query)
        if eq and eq.group(1).lower() == "rolename":
            roles = [r for r in roles if r.role_name.lower() == eq.group(2).lower()]
        elif not (eq and eq.group(1).lower() == "type" and eq.group(2).lower() == "builtinrole"):
            raise errors.unsupported_filter(query)
    return _json({"value": [r.to_arm(sub) for r in roles]})


def _method_not_allowed(method: str) -> Exception:
    return errors.arm(405, "MethodNotAllowed", f"The requested resource does not support http method '{method}'.")


async def handle(services: Any, request: web.Request, authorizer: Authorizer | None = None,
                 principal: str | None = None) -> web.StreamResponse | None:
    """Answer a Microsoft.Authorization request; None when the path is not one.

    `authorizer` (if given) is invalidated at once after a write; `principal`
    is recorded as the assignment's createdBy (the local admin by default).
    """
    assignments = _ASSIGNMENTS.match(request.path)
    definitions = None if assignments else _DEFINITIONS.match(request.path)
    found = assignments or definitions
    if found is None:
        return None
    if not request.query.get("api-version"):
        raise errors.arm_missing_api_version()
    scope, name = found.group("scope"), found.group("name")
    if definitions is not None:
        return _definitions(request, scope, name)
    if principal is None:
        from lapis.services import ADMIN_PRINCIPAL

        principal = ADMIN_PRINCIPAL
    return await _assignments(_Context(services, authorizer, principal), request, scope, name)
