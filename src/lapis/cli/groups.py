"""`lapis provider ...` and `lapis group ...`, as `az provider` and `az group`."""

from __future__ import annotations

from typing import Annotated

import typer

from lapis.cli.client import RESOURCES_API, CliError, path
from lapis.cli.common import (Location, Output, Query, Subscription, Tags, Yes, client, confirm, new_typer,
                              parse_tags, show, subscription_id)
from lapis.cli.output import OutputFormat, field

provider_app = new_typer("Manage resource providers.")
group_app = new_typer("Manage resource groups.")

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="The resource provider namespace, "
                                        "e.g. Microsoft.CognitiveServices.")]
GroupName = Annotated[str, typer.Option("--name", "-n", "--resource-group", "-g", help="Name of the resource group.")]
GROUP_COLUMNS = [("Name", field("name")), ("Location", field("location")),
                 ("Status", field("properties.provisioningState"))]


def _provider(sub: str, namespace: str, *action: str) -> str:
    return path("subscriptions", sub, "providers", namespace, *action)


@provider_app.command("register")
def provider_register(namespace: Namespace, subscription: Subscription = None,
                      wait: Annotated[bool, typer.Option("--wait", help="Wait for the registration to finish "
                                                         "(it is instant here).")] = False) -> None:
    """Register a provider (prints nothing, like az)."""
    api = client()
    api.request("POST", _provider(subscription_id(api, subscription), namespace, "register"),
                api_version=RESOURCES_API)


@provider_app.command("unregister")
def provider_unregister(namespace: Namespace, subscription: Subscription = None,
                        wait: Annotated[bool, typer.Option("--wait", help="Wait for it to finish.")] = False) -> None:
    """Unregister a provider."""
    api = client()
    api.request("POST", _provider(subscription_id(api, subscription), namespace, "unregister"),
                api_version=RESOURCES_API)


@provider_app.command("show")
def provider_show(namespace: Namespace, subscription: Subscription = None, output: Output = OutputFormat.json,
                  query: Query = None) -> None:
    """Get a provider's registration state and resource types."""
    api = client()
    show(api.get(_provider(subscription_id(api, subscription), namespace), RESOURCES_API), output, query)


def _group(sub: str, name: str) -> str:
    return path("subscriptions", sub, "resourcegroups", name)


@group_app.command("create")
def group_create(name: GroupName, location: Location, tags: Tags = None, subscription: Subscription = None,
                 output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create a new resource group (or update an existing one)."""
    api = client()
    body: dict = {"location": location}
    if tags is not None:
        body["tags"] = parse_tags(tags)
    show(api.request("PUT", _group(subscription_id(api, subscription), name), body, RESOURCES_API), output, query,
         GROUP_COLUMNS)


@group_app.command("show")
def group_show(name: GroupName, subscription: Subscription = None, output: Output = OutputFormat.json,
               query: Query = None) -> None:
    """Get a resource group."""
    api = client()
    show(api.get(_group(subscription_id(api, subscription), name), RESOURCES_API), output, query, GROUP_COLUMNS)


@group_app.command("list")
def group_list(subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List resource groups."""
    api = client()
    groups = api.value(path("subscriptions", subscription_id(api, subscription), "resourcegroups"), RESOURCES_API)
    show(groups, output, query, GROUP_COLUMNS)


@group_app.command("exists")
def group_exists(name: GroupName, subscription: Subscription = None) -> None:
    """Check whether a resource group exists (prints true or false)."""
    api = client()
    try:
        api.get(_group(subscription_id(api, subscription), name), RESOURCES_API)
    except CliError as error:
        if error.code != "ResourceGroupNotFound":
            raise
        typer.echo("false")
        return
    typer.echo("true")


@group_app.command("delete")
def group_delete(name: GroupName, yes: Yes = False, subscription: Subscription = None,
                 no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait (deletion is instant "
                                                       "here).")] = False) -> None:
    """Delete a resource group and everything in it."""
    confirm(yes)
    api = client()
    api.request("DELETE", _group(subscription_id(api, subscription), name), api_version=RESOURCES_API)
