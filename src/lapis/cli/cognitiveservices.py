"""`lapis cognitiveservices ...`: accounts, their keys and models, the model
catalogue, as `az cognitiveservices` (flags spelled as az spells them).
Deployments live in deployments.py, quota usage in quota.py."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from lapis.cli.client import path
from lapis.cli.common import (AccountName, Location, Output, Query, ResourceGroup, Subscription, Tags, Yes, client,
                              new_typer, parse_tags, show, subscription_id)
from lapis.cli.deployments import deployment_app
from lapis.cli.output import OutputFormat, field
from lapis.cli.quota import usage_app

NAMESPACE = "Microsoft.CognitiveServices"
cognitiveservices_app = new_typer("Manage Azure OpenAI (Cognitive Services) accounts and models.")
account_app = new_typer("Manage Cognitive Services accounts.")
keys_app = new_typer("Manage the keys of a Cognitive Services account.")
model_app = new_typer("Explore the models available in a region.")
cognitiveservices_app.add_typer(account_app, name="account")
cognitiveservices_app.add_typer(model_app, name="model")
cognitiveservices_app.add_typer(usage_app, name="usage")
account_app.add_typer(deployment_app, name="deployment")
account_app.add_typer(keys_app, name="keys")
network_rule_app = new_typer("Manage an account's network rules (networkAcls ipRules).")
account_app.add_typer(network_rule_app, name="network-rule")

PublicNetworkAccess = Annotated[Optional[str], typer.Option(
    "--public-network-access", help="Enabled or Disabled: whether the account takes calls from public networks.")]
CustomDomain = Annotated[Optional[str], typer.Option(
    "--custom-domain", help="The subdomain of the account's endpoint; it cannot be changed once set.")]


def _skus(item: dict[str, Any]) -> str:
    return ",".join(str(s.get("name")) for s in item.get("skus") or [] if isinstance(s, dict))


MODEL_COLUMNS = [("Name", field("name")), ("Version", field("version")), ("Format", field("format")),
                 ("IsDefaultVersion", field("isDefaultVersion")), ("LifecycleStatus", field("lifecycleStatus")),
                 ("Skus", _skus)]
LOCATION_MODEL_COLUMNS = [(name, lambda item, get=get: get(item.get("model") or {})) for name, get in MODEL_COLUMNS]


def account_path(sub: str, group: str, name: str, *rest: str) -> str:
    return path("subscriptions", sub, "resourceGroups", group, "providers", NAMESPACE, "accounts", name, *rest)


def _public_access(value: str | None) -> str | None:
    if value is None:
        return None
    for choice in ("Enabled", "Disabled"):
        if value.lower() == choice.lower():
            return choice
    raise typer.BadParameter(f"'{value}' is not one of 'Enabled', 'Disabled'.", param_hint="--public-network-access")


# -- accounts ----------------------------------------------------------------

@account_app.command("create")
def account_create(name: AccountName, resource_group: ResourceGroup,
                   kind: Annotated[str, typer.Option("--kind", help="The API name, e.g. OpenAI.")],
                   sku: Annotated[str, typer.Option("--sku", "--sku-name", help="Name of the SKU, e.g. S0.")],
                   location: Location,
                   custom_domain: CustomDomain = None,
                   yes: Yes = False,
                   assign_identity: Annotated[bool, typer.Option(
                       "--assign-identity", help="Give the account a system-assigned managed identity.")] = False,
                   public_network_access: PublicNetworkAccess = None,
                   tags: Tags = None, subscription: Subscription = None,
                   output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create a Cognitive Services account (kind OpenAI for Azure OpenAI)."""
    properties: dict[str, Any] = {}
    if custom_domain:
        properties["customSubDomainName"] = custom_domain
    properties["publicNetworkAccess"] = _public_access(public_network_access) or "Enabled"
    body: dict[str, Any] = {"kind": kind, "sku": {"name": sku}, "location": location, "properties": properties}
    if assign_identity:
        body["identity"] = {"type": "SystemAssigned"}
    if tags is not None:
        body["tags"] = parse_tags(tags)
    api = client()
    sub = subscription_id(api, subscription)
    show(api.request("PUT", account_path(sub, resource_group, name), body), output, query)


@account_app.command("show")
def account_show(name: AccountName, resource_group: ResourceGroup, subscription: Subscription = None,
                 output: Output = OutputFormat.json, query: Query = None) -> None:
    """Show an account."""
    api = client()
    show(api.get(account_path(subscription_id(api, subscription), resource_group, name)), output, query)


@account_app.command("list")
def account_list(resource_group: Annotated[Optional[str], typer.Option(
                     "--resource-group", "-g", help="Only the accounts of this resource group.")] = None,
                 subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the accounts of a resource group, or of the whole subscription."""
    api = client()
    sub = subscription_id(api, subscription)
    where = ("subscriptions", sub) + (("resourceGroups", resource_group) if resource_group else ())
    show(api.value(path(*where, "providers", NAMESPACE, "accounts")), output, query)


@account_app.command("update")
def account_update(name: AccountName, resource_group: ResourceGroup, tags: Tags = None,
                   public_network_access: PublicNetworkAccess = None, custom_domain: CustomDomain = None,
                   sku: Annotated[Optional[str], typer.Option("--sku", "--sku-name", help="Name of the SKU.")] = None,
                   default_action: Annotated[Optional[str], typer.Option(
                       "--default-action", help="Allow or Deny: what happens to callers no network rule names.")] = None,
                   subscription: Subscription = None, output: Output = OutputFormat.json,
                   query: Query = None) -> None:
    """Update an account's tags, network access, custom domain or SKU (PATCH)."""
    body: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    if tags is not None:
        body["tags"] = parse_tags(tags)
    if public_network_access is not None:
        properties["publicNetworkAccess"] = _public_access(public_network_access)
    if custom_domain is not None:
        properties["customSubDomainName"] = custom_domain
    if sku is not None:
        body["sku"] = {"name": sku}
    api = client()
    sub = subscription_id(api, subscription)
    if default_action is not None:
        acls = _network_acls(api, sub, resource_group, name)
        acls["defaultAction"] = default_action.capitalize()
        properties["networkAcls"] = acls
    if properties:
        body["properties"] = properties
    show(api.request("PATCH", account_path(sub, resource_group, name), body), output, query)


def _network_acls(api: Any, sub: str, group: str, name: str) -> dict[str, Any]:
    current = (api.get(account_path(sub, group, name)).get("properties") or {}).get("networkAcls") or {}
    return {"defaultAction": current.get("defaultAction") or "Allow", "ipRules": list(current.get("ipRules") or []),
            "virtualNetworkRules": list(current.get("virtualNetworkRules") or [])}


IpAddress = Annotated[str, typer.Option("--ip-address", help="An IPv4 address or CIDR range, e.g. 203.0.113.0/24.")]


def _set_rules(name: str, group: str, subscription: str | None, change: Any) -> dict[str, Any]:
    api = client()
    sub = subscription_id(api, subscription)
    acls = _network_acls(api, sub, group, name)
    acls["ipRules"] = change(acls["ipRules"])
    account = api.request("PATCH", account_path(sub, group, name), {"properties": {"networkAcls": acls}})
    return (account.get("properties") or {}).get("networkAcls") or {}


@network_rule_app.command("add")
def network_rule_add(name: AccountName, resource_group: ResourceGroup, ip_address: IpAddress,
                     subscription: Subscription = None, output: Output = OutputFormat.json,
                     query: Query = None) -> None:
    """Let an address or range call the account (when its default action is Deny)."""
    show(_set_rules(name, resource_group, subscription,
                    lambda rules: rules + [{"value": ip_address}] if all(r.get("value") != ip_address for r in rules)
                    else rules), output, query)


@network_rule_app.command("remove")
def network_rule_remove(name: AccountName, resource_group: ResourceGroup, ip_address: IpAddress,
                        subscription: Subscription = None, output: Output = OutputFormat.json,
                        query: Query = None) -> None:
    """Take an address or range out of the account's network rules."""
    show(_set_rules(name, resource_group, subscription,
                    lambda rules: [r for r in rules if r.get("value") != ip_address]), output, query)


@network_rule_app.command("list")
def network_rule_list(name: AccountName, resource_group: ResourceGroup, subscription: Subscription = None,
                      output: Output = OutputFormat.json, query: Query = None) -> None:
    """Show the account's network rules."""
    api = client()
    acls = _network_acls(api, subscription_id(api, subscription), resource_group, name)
    show({"ipRules": acls["ipRules"], "virtualNetworkRules": acls["virtualNetworkRules"]}, output, query)


@account_app.command("delete")
def account_delete(name: AccountName, resource_group: ResourceGroup, subscription: Subscription = None) -> None:
    """Delete an account and its deployments."""
    api = client()
    api.request("DELETE", account_path(subscription_id(api, subscription), resource_group, name))


@account_app.command("list-models")
def account_list_models(name: AccountName, resource_group: ResourceGroup, subscription: Subscription = None,
                        output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the models an account can deploy."""
    api = client()
    models = api.value(account_path(subscription_id(api, subscription), resource_group, name, "models"))
    show(models, output, query, MODEL_COLUMNS)


# -- keys --------------------------------------------------------------------

@keys_app.command("list")
def keys_list(name: AccountName, resource_group: ResourceGroup, subscription: Subscription = None,
              output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the account's two keys."""
    api = client()
    show(api.request("POST", account_path(subscription_id(api, subscription), resource_group, name, "listKeys")),
         output, query)


@keys_app.command("regenerate")
def keys_regenerate(name: AccountName, resource_group: ResourceGroup,
                    key_name: Annotated[str, typer.Option("--key-name", help="key1 or key2.")],
                    subscription: Subscription = None, output: Output = OutputFormat.json,
                    query: Query = None) -> None:
    """Regenerate one key; the other keeps working."""
    key = {"key1": "Key1", "key2": "Key2"}.get(key_name.lower())
    if key is None:
        raise typer.BadParameter(f"'{key_name}' is not one of 'key1', 'key2'.", param_hint="--key-name")
    api = client()
    sub = subscription_id(api, subscription)
    show(api.request("POST", account_path(sub, resource_group, name, "regenerateKey"), {"keyName": key}),
         output, query)


# -- the model catalogue -----------------------------------------------------

@model_app.command("list")
def model_list(location: Location, subscription: Subscription = None, output: Output = OutputFormat.json,
               query: Query = None) -> None:
    """List the models offered in a region."""
    api = client()
    sub = subscription_id(api, subscription)
    models = api.value(path("subscriptions", sub, "providers", NAMESPACE, "locations", location, "models"))
    show(models, output, query, LOCATION_MODEL_COLUMNS)
