"""`lapis role assignment create|list|delete` and `lapis role definition list`, as `az role`.

Output is az's: the ARM resource flattened (properties lifted to the top
level), `resourceGroup` added when the scope is in a group, and on `list`
the `roleDefinitionName` (and `principalName` when known) az adds.

--assignee takes an object id, a service principal's appId (or a managed
identity's clientId) or a user principal name, resolved to the object id as az
does (lapis.cli.assignees); --assignee-object-id skips the lookup.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Optional

import typer

from lapis.cli import assignees
from lapis.cli.client import CliError, Client
from lapis.cli.common import Output, Query, Subscription, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat, field, with_resource_group

AUTH_API = "2022-04-01"
PROVIDER = "/providers/Microsoft.Authorization"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

role_app = new_typer("Manage Azure role-based access control (Azure RBAC).")
assignment_app = new_typer("Manage role assignments.")
definition_app = new_typer("Manage role definitions.")
role_app.add_typer(assignment_app, name="assignment")
role_app.add_typer(definition_app, name="definition")

Assignee = Annotated[Optional[str], typer.Option(
    "--assignee", help="Represent a user, group, or service principal: object id, app id or user principal "
    "name.")]
AssigneeObjectId = Annotated[Optional[str], typer.Option(
    "--assignee-object-id", help="The assignee's object id (skips any lookup).")]
PrincipalType = Annotated[Optional[str], typer.Option(
    "--assignee-principal-type", help="User, Group, ServicePrincipal, ForeignGroup or Device.")]
Role = Annotated[Optional[str], typer.Option("--role", help="Role name or id.")]
Scope = Annotated[Optional[str], typer.Option(
    "--scope", help="Scope at which the role assignment or definition applies to, e.g. /subscriptions/0b1f6471-"
    "1bf0-4dda-aec3-111122223333/resourceGroups/myGroup.")]
ASSIGNMENT_COLUMNS = [("Principal", lambda a: a.get("principalName") or a.get("principalId")),
                      ("Role", lambda a: a.get("roleDefinitionName") or str(a.get("roleDefinitionId", "")).rsplit(
                          "/", 1)[-1]), ("Scope", field("scope"))]
DEFINITION_COLUMNS = [("Name", field("roleName")), ("Type", field("roleType")), ("Description", field("description"))]


def flatten(resource: dict[str, Any]) -> dict[str, Any]:
    """az's view of an ARM resource: `properties` merged into the top level."""
    flat = {k: v for k, v in resource.items() if k != "properties"}
    flat.update(resource.get("properties") or {})
    return flat


def _definition(resource: dict[str, Any]) -> dict[str, Any]:
    flat = flatten(resource)
    flat["roleType"] = (resource.get("properties") or {}).get("type")  # BuiltInRole
    flat["type"] = resource.get("type")
    return flat


def _default_scope(api: Client, subscription: str | None) -> str:
    return f"/subscriptions/{subscription_id(api, subscription)}"


def _principal(api: Client, assignee: str | None, object_id: str | None) -> str | None:
    if object_id is not None:
        if not _GUID.match(object_id.strip()):
            raise assignees.not_found(object_id)
        return object_id.strip().lower()
    return assignees.resolve(api, assignee) if assignee is not None else None


def _role_id(api: Client, role: str, scope: str) -> str:
    """A role's full id, from a name or a GUID (or a full id), as az resolves it."""
    if _GUID.match(role) or "/roledefinitions/" in role.lower():
        guid = role.rstrip("/").rsplit("/", 1)[-1]
        return str(api.get(f"{scope}{PROVIDER}/roleDefinitions/{guid}", AUTH_API)["id"])
    found = api.value(f"{scope}{PROVIDER}/roleDefinitions?$filter=roleName eq '{role}'", AUTH_API)
    if not found:
        raise CliError(f"Role '{role}' doesn't exist.")
    return str(found[0]["id"])


def _role_names(api: Client, scope: str) -> dict[str, str]:
    return {str(d["name"]).lower(): str(d["properties"]["roleName"])
            for d in api.value(f"{scope}{PROVIDER}/roleDefinitions", AUTH_API)}


def assign(api: Client, role: str, principal: str, scope: str, principal_type: str | None = None) -> dict[str, Any]:
    """PUT one role assignment (a new GUID) of `role` to `principal` at `scope`; the created resource."""
    properties = {"roleDefinitionId": _role_id(api, role, scope), "principalId": principal}
    if principal_type:
        properties["principalType"] = principal_type
    return api.request("PUT", f"{scope.rstrip('/')}{PROVIDER}/roleAssignments/{uuid.uuid4()}",
                       {"properties": properties}, AUTH_API)


@assignment_app.command("create")
def assignment_create(role: Role = None, assignee: Assignee = None, assignee_object_id: AssigneeObjectId = None,
                      assignee_principal_type: PrincipalType = None, scope: Scope = None,
                      subscription: Subscription = None, output: Output = OutputFormat.json,
                      query: Query = None) -> None:
    """Create a new role assignment for a user, group, or service principal."""
    api = client()
    if not role:
        raise CliError("the following arguments are required: --role")
    principal = _principal(api, assignee, assignee_object_id)
    if principal is None:
        raise CliError("usage error: --assignee | --assignee-object-id")
    if not scope:
        raise CliError("--scope is required. Please specify a scope, e.g. a subscription, resource group or "
                       "resource id.")
    created = assign(api, role, principal, scope, assignee_principal_type)
    show(with_resource_group(flatten(created)), output, query, ASSIGNMENT_COLUMNS)


def _list(api: Client, assignee: str | None, role: str | None, scope: str | None, subscription: str | None,
          everything: bool) -> list[dict[str, Any]]:
    where = (scope or _default_scope(api, subscription)).rstrip("/")
    filters = []
    principal = _principal(api, assignee, None)
    if principal:
        filters.append(f"principalId eq '{principal}'")
    if not everything:
        filters.append("atScope()")
    url = f"{where}{PROVIDER}/roleAssignments" + (f"?$filter={' and '.join(filters)}" if filters else "")
    names = _role_names(api, _default_scope(api, subscription))
    result = []
    for item in api.value(url, AUTH_API):
        flat = flatten(item)
        flat["roleDefinitionName"] = names.get(str(flat.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower())
        if role and role.lower() not in (str(flat["roleDefinitionName"] or "").lower(),
                                         str(flat.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower()):
            continue
        result.append(flat)
    return with_resource_group(result)


@assignment_app.command("list")
def assignment_list(assignee: Assignee = None, role: Role = None, scope: Scope = None,
                    everything: Annotated[bool, typer.Option("--all", help="Show all assignments under the "
                                                             "current subscription.")] = False,
                    subscription: Subscription = None, output: Output = OutputFormat.json,
                    query: Query = None) -> None:
    """List role assignments (at the subscription, or --scope, and inherited ones; --all for all below)."""
    api = client()
    show(_list(api, assignee, role, scope, subscription, everything or bool(assignee and not scope)), output,
         query, ASSIGNMENT_COLUMNS)


@assignment_app.command("delete")
def assignment_delete(ids: Annotated[Optional[list[str]], typer.Option(
                          "--ids", help="Space-separated role assignment ids.")] = None,
                      assignee: Assignee = None, role: Role = None, scope: Scope = None,
                      subscription: Subscription = None) -> None:
    """Delete role assignments, by id or by assignee, role and scope."""
    api = client()
    targets = [i for value in ids or [] for i in value.split()]
    if not targets:
        if not (assignee or role or scope):
            raise CliError("Please provide at least one of these parameters: --ids, --assignee, --role, --scope. "
                           "To delete all role assignments under the subscription, use --scope.")
        found = _list(api, assignee, role, scope, subscription, everything=bool(assignee and not scope))
        if scope:
            found = [a for a in found if str(a.get("scope", "")).lower() == scope.rstrip("/").lower()]
        targets = [str(a["id"]) for a in found]
        if not targets:
            raise CliError("No matched assignments were found to delete.")
    for target in targets:
        api.request("DELETE", target, api_version=AUTH_API)


@definition_app.command("list")
def definition_list(name: Annotated[Optional[str], typer.Option(
                        "--name", "-n", help="A role's name (e.g. Reader) or id.")] = None,
                    scope: Scope = None, subscription: Subscription = None, output: Output = OutputFormat.json,
                    query: Query = None) -> None:
    """List role definitions."""
    api = client()
    where = (scope or _default_scope(api, subscription)).rstrip("/")
    if name and _GUID.match(name):
        found = [api.get(f"{where}{PROVIDER}/roleDefinitions/{name}", AUTH_API)]
    else:
        url = f"{where}{PROVIDER}/roleDefinitions" + (f"?$filter=roleName eq '{name}'" if name else "")
        found = api.value(url, AUTH_API)
    show([_definition(d) for d in found], output, query, DEFINITION_COLUMNS)
