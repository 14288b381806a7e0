"""`lapis backend|pool|fault ...`: Lapis's own serving admin (not part of az).

    lapis backend create|list|show|delete          engines registered per region and model
    lapis pool create|list|show|delete             a pool serves one deployment from several members
    lapis pool member add|remove|list
    lapis fault set|list|clear|reset               injected misbehaviour, per region or per member

They call the admin API under /lapis/admin (lapis.management.serving_routes)
with the admin credential. `create` and `member add` create or replace, as
az's `create` commands do. Pools live in a subscription (`--subscription`,
default the local one); a pool's deployment is given by its ARM id or by
`--resource-group`, `--account-name` and `--deployment-name` in that
subscription.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional
from urllib.parse import quote

import typer

from lapis.cli.client import CliError, Client, path
from lapis.cli.common import Output, Query, Subscription, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat, field

ADMIN = "/lapis/admin"
NAMESPACE = "Microsoft.CognitiveServices"
backend_app = new_typer("Register the engines that serve a model in a region (Lapis's own commands).")
pool_app = new_typer("Serve one deployment from a pool of deployments and backends (Lapis's own commands).")
member_app = new_typer("Manage the members of a pool.")
pool_app.add_typer(member_app, name="member")
fault_app = new_typer("Inject faults per region or per member: 429s, 503s, latency, hangs, cut streams, down.")

BACKEND_COLUMNS = [("Name", field("id")), ("Region", field("region")), ("Model", field("model")),
                   ("Kind", field("kind")), ("Url", field("url")),
                   ("Upstream", lambda b: b.get("upstreamModel") or b.get("deployment")),
                   ("Weight", field("weight")), ("HasSecret", field("hasSecret"))]
POOL_COLUMNS = [("Name", field("name")), ("Deployment", lambda p: str(p.get("deploymentId", "")).rsplit("/", 1)[-1]),
                ("Members", lambda p: len(p.get("members") or [])), ("DeploymentId", field("deploymentId"))]
MEMBER_COLUMNS = [("Name", field("id")), ("Kind", field("kind")), ("Priority", field("priority")),
                  ("Weight", field("weight")), ("Key", field("key")), ("Target", field("target"))]
FAULT_COLUMNS = [("Scope", field("scope")), ("Target", field("target")), ("Rate429", field("rate429")),
                 ("Rate503", field("rate503")), ("RetryAfter", field("retryAfterSeconds")),
                 ("LatencyMs", field("latencyMs")), ("Hang", field("hang")), ("CutAfter", field("cutAfter")),
                 ("Down", field("down"))]
MEMBER_KEY_HELP = ("A member key: backend:<backend id>, sim:<region> or member:<pool>/<member id> "
                   "(`lapis pool member list` shows each member's key).")

BackendName = Annotated[str, typer.Option("--name", "-n", help="The backend's id, e.g. vllm-eastus-1.")]
PoolName = Annotated[str, typer.Option("--name", "-n", help="Name of the pool.")]
PoolOf = Annotated[str, typer.Option("--pool", help="Name of the pool.")]
MemberName = Annotated[str, typer.Option("--name", "-n", help="The member's id within the pool.")]
DeploymentId = Annotated[Optional[str], typer.Option("--deployment-id", help="The deployment's ARM id.")]
Group = Annotated[Optional[str], typer.Option("--resource-group", "-g", help="Resource group of the account.")]
AccountName = Annotated[Optional[str], typer.Option("--account-name", help="Name of the Cognitive Services account.")]
DeploymentName = Annotated[Optional[str], typer.Option("--deployment-name", help="Name of the deployment.")]
Region = Annotated[Optional[str], typer.Option("--region", "--location", "-l", help="A region, e.g. eastus.")]
MemberKey = Annotated[Optional[str], typer.Option("--member", help=MEMBER_KEY_HELP)]


def _in(sub: str, *segments: str) -> str:
    """An admin path for the pools of subscription `sub`."""
    return f"{path('lapis', 'admin', *segments)}?subscription={quote(sub, safe='')}"


def _admin(api: Client, method: str, url_path: str, body: Any = None) -> Any:
    return api.request(method, url_path, body, api_version=None)


# -- backends ------------------------------------------------------------------

@backend_app.command("create")
def backend_create(
        name: BackendName,
        region: Annotated[str, typer.Option("--region", "--location", "-l", help="The region it serves, e.g. "
                                                                                  "eastus.")],
        model: Annotated[str, typer.Option("--model", help="The catalogue model it serves, e.g. gpt-4o-mini.")],
        kind: Annotated[str, typer.Option("--kind", help="simulator, openai-compatible or azure.")],
        url: Annotated[Optional[str], typer.Option(
            "--url", help="openai-compatible: the base URL (…/v1); azure: the endpoint (https://RES.openai.azure.com)."
        )] = None,
        upstream_model: Annotated[Optional[str], typer.Option(
            "--upstream-model", help="openai-compatible: the engine's model name. Default: --model.")] = None,
        deployment: Annotated[Optional[str], typer.Option("--deployment", help="azure: the deployment name.")] = None,
        api_version: Annotated[Optional[str], typer.Option(
            "--api-version", help="azure: the api-version to send. Default: 2024-10-21.")] = None,
        api_key: Annotated[Optional[str], typer.Option("--api-key", help="The engine's API key.")] = None,
        tenant: Annotated[Optional[str], typer.Option("--tenant", help="azure, Entra: the tenant id.")] = None,
        client_id: Annotated[Optional[str], typer.Option("--client-id", help="azure, Entra: the app's client id.")]
        = None,
        client_secret: Annotated[Optional[str], typer.Option("--client-secret", help="azure, Entra: its secret.")]
        = None,
        authority: Annotated[Optional[str], typer.Option(
            "--authority", help="azure, Entra: the authority host. Default: login.microsoftonline.com.")] = None,
        timeout: Annotated[Optional[float], typer.Option(
            "--timeout", help="Seconds one attempt at this backend may take. Default: 60.")] = None,
        weight: Annotated[Optional[int], typer.Option(
            "--weight", help="Share among the backends of one region and model. Default: 1.")] = None,
        output: Output = OutputFormat.json, query: Query = None) -> None:
    """Register a backend (create or replace). Deployments of the model in the region are then served by it.
    A replace that gives no --api-key or --client-secret keeps the stored secret."""
    body: dict[str, Any] = {"region": region, "model": model, "kind": kind}
    for key, value in (("url", url), ("upstreamModel", upstream_model), ("deployment", deployment),
                       ("apiVersion", api_version), ("apiKey", api_key), ("timeoutSeconds", timeout),
                       ("weight", weight)):
        if value is not None:
            body[key] = value
    auth = {k: v for k, v in (("tenant", tenant), ("clientId", client_id), ("clientSecret", client_secret),
                              ("authority", authority)) if v is not None}
    if auth:
        body["auth"] = auth
    show(_admin(client(), "PUT", path("lapis", "admin", "backends", name), body), output, query, BACKEND_COLUMNS)


@backend_app.command("list")
def backend_list(output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the registered backends (secrets are never shown: see hasSecret)."""
    show(client().value(f"{ADMIN}/backends", api_version=None), output, query, BACKEND_COLUMNS)


@backend_app.command("show")
def backend_show(name: BackendName, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Show one backend."""
    show(client().get(path("lapis", "admin", "backends", name), api_version=None), output, query, BACKEND_COLUMNS)


@backend_app.command("delete")
def backend_delete(name: BackendName) -> None:
    """Remove a backend (refused while a pool lists it as a member)."""
    _admin(client(), "DELETE", path("lapis", "admin", "backends", name))


# -- pools ---------------------------------------------------------------------

def _deployment_id(sub: str, deployment_id: str | None, group: str | None, account: str | None,
                   deployment: str | None, option: str = "--deployment-id") -> str | None:
    """--deployment-id as given, or the id built from the three names (None when neither)."""
    named = [v for v in (group, account, deployment) if v]
    if deployment_id and named:
        raise CliError(f"Give {option} or --resource-group, --account-name and --deployment-name, not both.")
    if deployment_id:
        return deployment_id
    if not named:
        return None
    if len(named) != 3:
        raise CliError("--resource-group, --account-name and --deployment-name go together.")
    return (f"/subscriptions/{sub}/resourceGroups/{group}/providers/{NAMESPACE}/accounts/{account}"
            f"/deployments/{deployment}")


@pool_app.command("create")
def pool_create(name: PoolName, resource_group: Group = None, account_name: AccountName = None,
                deployment_name: DeploymentName = None, deployment_id: DeploymentId = None,
                subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create a pool serving one deployment (or move a pool to another deployment; members are kept).
    Callers keep that deployment's endpoint and name; `pool member add` gives it members."""
    api = client()
    sub = subscription_id(api, subscription)
    target = _deployment_id(sub, deployment_id, resource_group, account_name, deployment_name)
    if target is None:
        raise CliError("Name the deployment the pool serves: --deployment-id, or --resource-group, --account-name "
                       "and --deployment-name.")
    show(_admin(api, "PUT", _in(sub, "pools", name), {"deploymentId": target}), output, query, POOL_COLUMNS)


@pool_app.command("list")
def pool_list(subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the subscription's pools."""
    api = client()
    show(api.value(_in(subscription_id(api, subscription), "pools"), api_version=None), output, query, POOL_COLUMNS)


@pool_app.command("show")
def pool_show(name: PoolName, subscription: Subscription = None, output: Output = OutputFormat.json,
              query: Query = None) -> None:
    """Show a pool and its members."""
    api = client()
    show(api.get(_in(subscription_id(api, subscription), "pools", name), api_version=None), output, query,
         POOL_COLUMNS)


@pool_app.command("delete")
def pool_delete(name: PoolName, subscription: Subscription = None) -> None:
    """Delete a pool: its deployment is served by its own engines again."""
    api = client()
    _admin(api, "DELETE", _in(subscription_id(api, subscription), "pools", name))


@member_app.command("add")
def member_add(pool: PoolOf, name: MemberName, deployment_id: DeploymentId = None, resource_group: Group = None,
               account_name: AccountName = None, deployment_name: DeploymentName = None,
               backend: Annotated[Optional[str], typer.Option("--backend", help="A registered backend's id.")] = None,
               priority: Annotated[int, typer.Option("--priority", help="Lower is tried first.")] = 1,
               weight: Annotated[int, typer.Option("--weight", help="Share within its priority.")] = 1,
               subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Add a member (or replace one of the same name): a deployment on any account (--deployment-id, or the
    three names in --subscription) or a registered backend (--backend)."""
    api = client()
    sub = subscription_id(api, subscription)
    target = _deployment_id(sub, deployment_id, resource_group, account_name, deployment_name)
    if (target is None) == (backend is None):
        raise CliError("Give one member: --deployment-id, --resource-group/--account-name/--deployment-name, "
                       "or --backend.")
    body = {"kind": "deployment" if target else "backend", "target": target or backend, "priority": priority,
            "weight": weight}
    found = _admin(api, "PUT", _in(sub, "pools", pool, "members", name), body)
    added = next((m for m in found.get("members", []) if str(m.get("id", "")).lower() == name.lower()), found)
    show(added, output, query, MEMBER_COLUMNS)


@member_app.command("remove")
def member_remove(pool: PoolOf, name: MemberName, subscription: Subscription = None) -> None:
    """Remove a member from a pool."""
    api = client()
    _admin(api, "DELETE", _in(subscription_id(api, subscription), "pools", pool, "members", name))


@member_app.command("list")
def member_list(pool: PoolOf, subscription: Subscription = None, output: Output = OutputFormat.json,
                query: Query = None) -> None:
    """List a pool's members, lowest priority first, with the key `lapis fault set --member` takes."""
    api = client()
    found = api.get(_in(subscription_id(api, subscription), "pools", pool), api_version=None)
    show(found.get("members", []), output, query, MEMBER_COLUMNS)


# -- faults --------------------------------------------------------------------

def _fault_path(region: str | None, member: str | None) -> str:
    if (region is None) == (member is None):
        raise CliError("Give one of --region or --member.")
    return path("lapis", "admin", "faults", "region", region) if region else path("lapis", "admin", "faults",
                                                                                  "member", str(member))


@fault_app.command("set")
def fault_set(
        region: Region = None, member: MemberKey = None,
        rate_429: Annotated[Optional[float], typer.Option("--rate-429", help="Share of calls answered 429 (0 to 1).")]
        = None,
        rate_503: Annotated[Optional[float], typer.Option("--rate-503", help="Share of calls answered 503 (0 to 1).")]
        = None,
        retry_after: Annotated[Optional[float], typer.Option(
            "--retry-after", help="Seconds the injected 429s ask callers to wait. Default: 1.")] = None,
        latency_ms: Annotated[Optional[float], typer.Option("--latency-ms", help="Added before the first byte.")]
        = None,
        hang: Annotated[bool, typer.Option("--hang", help="Never answer (the caller's deadline ends the call).")]
        = False,
        cut_after: Annotated[Optional[int], typer.Option("--cut-after", help="Cut streams after N chunks.")] = None,
        down: Annotated[bool, typer.Option("--down", help="Refuse every call, as a server that is down.")] = False,
        output: Output = OutputFormat.json, query: Query = None) -> None:
    """Make a region or one member misbehave (replaces the fault already set there). Member keys are
    backend:<backend id>, sim:<region> or member:<pool>/<member id>."""
    body: dict[str, Any] = {"hang": hang, "down": down}
    for key, value in (("rate429", rate_429), ("rate503", rate_503), ("retryAfterSeconds", retry_after),
                       ("latencyMs", latency_ms), ("cutAfter", cut_after)):
        if value is not None:
            body[key] = value
    show(_admin(client(), "PUT", _fault_path(region, member), body), output, query, FAULT_COLUMNS)


@fault_app.command("list")
def fault_list(output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the faults in force."""
    show(client().value(f"{ADMIN}/faults", api_version=None), output, query, FAULT_COLUMNS)


@fault_app.command("clear")
def fault_clear(region: Region = None, member: MemberKey = None) -> None:
    """Remove the fault of one region or member."""
    _admin(client(), "DELETE", _fault_path(region, member))


@fault_app.command("reset")
def fault_reset(output: Output = OutputFormat.json, query: Query = None) -> None:
    """Remove every fault: everything healthy again."""
    show(_admin(client(), "DELETE", f"{ADMIN}/faults"), output, query)
