"""`lapis cognitiveservices account deployment ...`, as az spells it.

`--model-version` may be left out: the server then deploys the catalogue's
default version of the model. `--capacity` and newer az's `--sku-capacity`
are the same option.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from lapis.cli.client import path
from lapis.cli.common import (AccountName, Output, Query, ResourceGroup, Subscription, client, new_typer, show,
                              subscription_id)
from lapis.cli.output import OutputFormat, field

deployment_app = new_typer("Manage the model deployments of a Cognitive Services account.")

DeploymentName = Annotated[str, typer.Option("--deployment-name", help="Name of the deployment.")]
COLUMNS = [("Name", field("name")), ("Model", field("properties.model.name")),
           ("Version", field("properties.model.version")), ("SkuName", field("sku.name")),
           ("Capacity", field("sku.capacity")), ("ProvisioningState", field("properties.provisioningState")),
           ("ResourceGroup", field("resourceGroup"))]


def _path(sub: str, group: str, account: str, *rest: str) -> str:
    return path("subscriptions", sub, "resourceGroups", group, "providers", "Microsoft.CognitiveServices",
                "accounts", account, "deployments", *rest)


@deployment_app.command("create")
def deployment_create(
        name: AccountName, resource_group: ResourceGroup, deployment_name: DeploymentName,
        model_name: Annotated[str, typer.Option("--model-name", help="The model, e.g. gpt-4o-mini.")],
        model_format: Annotated[str, typer.Option("--model-format", help="The model format, e.g. OpenAI.")] = "OpenAI",
        model_version: Annotated[Optional[str], typer.Option(
            "--model-version", help="The model version. Default: the model's default version.")] = None,
        sku_name: Annotated[str, typer.Option("--sku-name", "--sku",
                                              help="Standard, GlobalStandard, ...")] = "Standard",
        capacity: Annotated[int, typer.Option("--capacity", "--sku-capacity",
                                              help="Capacity, in thousands of tokens per minute.")] = 1,
        rai_policy_name: Annotated[Optional[str], typer.Option("--rai-policy-name",
                                                               help="The content filter policy.")] = None,
        version_upgrade_option: Annotated[Optional[str], typer.Option(
            "--version-upgrade-option",
            help="OnceNewDefaultVersionAvailable, OnceCurrentVersionExpired or NoAutoUpgrade.")] = None,
        subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Deploy a model under a deployment name (create or update)."""
    model: dict[str, Any] = {"format": model_format, "name": model_name}
    if model_version:
        model["version"] = model_version
    properties: dict[str, Any] = {"model": model}
    if rai_policy_name:
        properties["raiPolicyName"] = rai_policy_name
    if version_upgrade_option:
        properties["versionUpgradeOption"] = version_upgrade_option
    body = {"sku": {"name": sku_name, "capacity": capacity}, "properties": properties}
    api = client()
    sub = subscription_id(api, subscription)
    show(api.request("PUT", _path(sub, resource_group, name, deployment_name), body), output, query, COLUMNS)


@deployment_app.command("list")
def deployment_list(name: AccountName, resource_group: ResourceGroup, subscription: Subscription = None,
                    output: Output = OutputFormat.json, query: Query = None) -> None:
    """List an account's deployments."""
    api = client()
    show(api.value(_path(subscription_id(api, subscription), resource_group, name)), output, query, COLUMNS)


@deployment_app.command("show")
def deployment_show(name: AccountName, resource_group: ResourceGroup, deployment_name: DeploymentName,
                    subscription: Subscription = None, output: Output = OutputFormat.json,
                    query: Query = None) -> None:
    """Show one deployment."""
    api = client()
    sub = subscription_id(api, subscription)
    show(api.get(_path(sub, resource_group, name, deployment_name)), output, query, COLUMNS)


@deployment_app.command("delete")
def deployment_delete(name: AccountName, resource_group: ResourceGroup, deployment_name: DeploymentName,
                      subscription: Subscription = None) -> None:
    """Delete a deployment."""
    api = client()
    api.request("DELETE", _path(subscription_id(api, subscription), resource_group, name, deployment_name))
