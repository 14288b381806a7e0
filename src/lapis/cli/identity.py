"""Identity commands, printed as az prints them.

    lapis ad sp create-for-rbac --name NAME         appId, displayName, password, tenant
    lapis ad sp list
    lapis identity create --name N --resource-group G   a user-assigned managed identity
    lapis identity list
    lapis identity env                              (Lapis's own) the managed-identity variables to export
    lapis account get-access-token [--resource R | --scope S]

They call Lapis's admin API (/lapis/admin/..., see lapis.identity.routes)
with the admin credential from LAPIS_HOME/server.json. `get-access-token`
mints a token for the local admin, the CLI's signed-in user.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional

import typer

from lapis.cli.client import CliError, path
from lapis.cli.common import Output, Query, ResourceGroup, Subscription, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat
from lapis.cli.role import assign

ad_app = new_typer("Manage Microsoft Entra ID (Lapis's directory) objects.")
sp_app = new_typer("Manage service principals.")
ad_app.add_typer(sp_app, name="sp")
identity_app = new_typer("Manage managed identities.")

ARM_RESOURCE = "https://management.core.windows.net/"
CREDENTIALS_WARNING = ("WARNING: The output includes credentials that you must protect. Be sure that you do not "
                       "include these credentials in your code or check the credentials into your source control.")


def _admin(method: str, *segments: str, body: Any = None) -> Any:
    return client().request(method, path("lapis", "admin", *segments), body=body, api_version=None)


@sp_app.command("create-for-rbac")
def sp_create_for_rbac(
        name: Annotated[str, typer.Option("--name", "-n", help="Display name of the service principal.")],
        role: Annotated[Optional[str], typer.Option("--role", help="Role of the service principal.")] = None,
        scopes: Annotated[Optional[list[str]], typer.Option("--scopes", help="Scopes the role applies to.")] = None,
        output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create a service principal with a client secret (an existing name gets a new secret),
    and with --role and --scopes, assign it that role at each scope."""
    if bool(role) != bool(scopes):
        raise CliError("usage error: --role and --scopes must be given together")
    created = _admin("POST", "servicePrincipals", body={"displayName": name})
    for scope in scopes or ():
        typer.echo(f"Creating '{role}' role assignment under scope '{scope}'", err=True)
        assign(client(), str(role), created["objectId"], scope, "ServicePrincipal")
    typer.echo(CREDENTIALS_WARNING, err=True)
    show({k: created[k] for k in ("appId", "displayName", "password", "tenant")}, output, query)


@sp_app.command("list")
def sp_list(output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the service principals (never their secrets)."""
    show((_admin("GET", "servicePrincipals") or {}).get("value", []), output, query)


def az_identity(resource: dict[str, Any]) -> dict[str, Any]:
    """ARM's userAssignedIdentities resource as `az identity create|show` prints it (properties flattened)."""
    props = resource.get("properties") or {}
    parts = str(resource.get("id", "")).split("/")
    group = parts[4] if len(parts) > 4 else None
    return {"clientId": props.get("clientId"), "id": resource.get("id"), "location": resource.get("location"),
            "name": resource.get("name"), "principalId": props.get("principalId"), "resourceGroup": group,
            "systemData": None, "tags": resource.get("tags") or {}, "tenantId": props.get("tenantId"),
            "type": resource.get("type")}


@identity_app.command("create")
def identity_create(
        name: Annotated[str, typer.Option("--name", "-n", help="The name of the identity resource.")],
        resource_group: ResourceGroup,
        location: Annotated[Optional[str], typer.Option("--location", "-l", help="Default: the group's.")] = None,
        subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create a user-assigned managed identity (idempotent, as ARM's PUT)."""
    sub = subscription_id(client(), subscription)
    body = {"subscriptionId": sub, "resourceGroup": resource_group, "name": name, "location": location}
    show(az_identity(_admin("POST", "userAssignedIdentities", body=body)), output, query)


@identity_app.command("list")
def identity_list(output: Output = OutputFormat.json, query: Query = None) -> None:
    """List every managed identity Lapis knows: user-assigned, accounts' and the workload's."""
    show((_admin("GET", "managedIdentities") or {}).get("value", []), output, query)


@identity_app.command("env")
def identity_env() -> None:
    """Print the exports that let a workload get managed-identity tokens (DefaultAzureCredential)."""
    for key, value in (_admin("GET", "identity", "environment") or {}).items():
        typer.echo(f"export {key}={value}")


def _resource_of(resource: str | None, scope: str | None) -> str:
    if resource and scope:
        raise CliError("usage error: --resource and --scope are mutually exclusive.")
    if scope:
        return scope[: -len("/.default")] if scope.endswith("/.default") else scope
    return resource or ARM_RESOURCE


def get_access_token(
        resource: Annotated[Optional[str], typer.Option("--resource", help="Azure resource endpoints.")] = None,
        scope: Annotated[Optional[str], typer.Option("--scope", help="Space-separated AAD scopes.")] = None,
        subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Get a token for the signed-in user (the local admin) to access a resource."""
    api = client()
    sub = subscription_id(api, subscription)
    got = api.request("POST", path("lapis", "admin", "token"), body={"resource": _resource_of(resource, scope)},
                      api_version=None)
    expires_on = int(got["expiresOn"])
    show({"accessToken": got["accessToken"],
          "expiresOn": datetime.fromtimestamp(expires_on).strftime("%Y-%m-%d %H:%M:%S.%f"),
          "expires_on": expires_on, "subscription": sub, "tenant": got["tenant"], "tokenType": "Bearer"},
         output, query)


def add_account_commands(account_app: typer.Typer) -> None:
    """Add `get-access-token` to the `lapis account` group (which lives in subscriptions.py)."""
    account_app.command("get-access-token")(get_access_token)
