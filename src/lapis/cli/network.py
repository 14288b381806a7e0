"""`lapis network private-endpoint create|show|list|delete`, as `az network private-endpoint`.

The flags are az's, plus Lapis's `--address` and `--port`: where the
endpoint's listener opens (default 127.0.0.2, and a port the server finds
free). The output is az's view of the resource, properties lifted to the top
level and `resourceGroup` added; `lapisListener.endpoint` in it is the
account's endpoint URL through the private endpoint.

Lapis has no virtual networks: `--subnet` (a name with `--vnet-name`, or an
id) is recorded as given and may be left out, and so may `--connection-name`
and `--group-id` (they default to "<name>-connection" and "account").
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from lapis.cli.client import RESOURCES_API, CliError, path
from lapis.cli.common import Output, Query, ResourceGroup, Subscription, Tags, client, new_typer, parse_tags, show
from lapis.cli.common import subscription_id
from lapis.cli.output import OutputFormat, field, with_resource_group

NETWORK_API = "2024-05-01"
network_app = new_typer("Manage Azure network resources (private endpoints).")
private_endpoint_app = new_typer("Manage private endpoints: extra listeners bound to one account.")
network_app.add_typer(private_endpoint_app, name="private-endpoint")

Name = Annotated[str, typer.Option("--name", "-n", help="Name of the private endpoint.")]
COLUMNS = [("Name", field("name")), ("ResourceGroup", field("resourceGroup")), ("Location", field("location")),
           ("Address", field("lapisListener.address")), ("Port", field("lapisListener.port")),
           ("ProvisioningState", field("provisioningState"))]


def endpoint_path(sub: str, group: str, name: str | None = None) -> str:
    segments = ["subscriptions", sub, "resourceGroups", group, "providers", "Microsoft.Network", "privateEndpoints"]
    return path(*segments, *([name] if name else []))


def flatten(resource: dict[str, Any]) -> dict[str, Any]:
    """az's view: `properties` lifted, in the resource and in each connection."""
    flat = {k: v for k, v in resource.items() if k != "properties"}
    flat.update(resource.get("properties") or {})
    for key in ("privateLinkServiceConnections", "manualPrivateLinkServiceConnections"):
        if isinstance(flat.get(key), list):
            flat[key] = [with_resource_group(flatten(item)) for item in flat[key] if isinstance(item, dict)]
    return with_resource_group(flat)


def _subnet(sub: str, group: str, subnet: str | None, vnet_name: str | None) -> dict[str, str] | None:
    if not subnet:
        return None
    if subnet.startswith("/"):
        return {"id": subnet}
    if not vnet_name:
        raise CliError("usage error: --subnet ID | --subnet NAME --vnet-name NAME")
    return {"id": path("subscriptions", sub, "resourceGroups", group, "providers", "Microsoft.Network",
                       "virtualNetworks", vnet_name, "subnets", subnet)}


@private_endpoint_app.command("create")
def create(name: Name, resource_group: ResourceGroup,
           connection_resource_id: Annotated[str, typer.Option(
               "--private-connection-resource-id", help="The id of the account the endpoint leads to.")],
           group_id: Annotated[str, typer.Option("--group-id", "--group-ids", help="The sub-resource: account.")] =
           "account",
           connection_name: Annotated[Optional[str], typer.Option(
               "--connection-name", help="Name of the private link service connection.")] = None,
           subnet: Annotated[Optional[str], typer.Option("--subnet", help="Subnet name (with --vnet-name) or id.")] =
           None,
           vnet_name: Annotated[Optional[str], typer.Option("--vnet-name", help="The virtual network's name.")] = None,
           location: Annotated[Optional[str], typer.Option(
               "--location", "-l", help="Location. Default: the resource group's.")] = None,
           request_message: Annotated[Optional[str], typer.Option(
               "--request-message", help="A message sent with the connection request.")] = None,
           address: Annotated[str, typer.Option(
               "--address", help="Lapis: the address the endpoint listens on.")] = "127.0.0.2",
           port: Annotated[int, typer.Option(
               "--port", help="Lapis: the port it listens on; 0 lets the server choose.", min=0, max=65535)] = 0,
           tags: Tags = None, subscription: Subscription = None, output: Output = OutputFormat.json,
           query: Query = None) -> None:
    """Create a private endpoint: the account is served on its own address and port,
    even with public network access disabled."""
    api = client()
    sub = subscription_id(api, subscription)
    if not location:
        location = str(api.get(path("subscriptions", sub, "resourceGroups", resource_group), RESOURCES_API)
                       ["location"])
    link: dict[str, Any] = {"privateLinkServiceId": connection_resource_id, "groupIds": [group_id]}
    if request_message:
        link["requestMessage"] = request_message
    properties: dict[str, Any] = {
        "privateLinkServiceConnections": [{"name": connection_name or f"{name}-connection", "properties": link}],
        "lapisListener": {"address": address, "port": port},
    }
    found_subnet = _subnet(sub, resource_group, subnet, vnet_name)
    if found_subnet:
        properties["subnet"] = found_subnet
    body: dict[str, Any] = {"location": location, "properties": properties}
    if tags is not None:
        body["tags"] = parse_tags(tags)
    created = api.request("PUT", endpoint_path(sub, resource_group, name), body, NETWORK_API)
    show(flatten(created), output, query, COLUMNS)


@private_endpoint_app.command("show")
def show_endpoint(name: Name, resource_group: ResourceGroup, subscription: Subscription = None,
                  output: Output = OutputFormat.json, query: Query = None) -> None:
    """Show a private endpoint."""
    api = client()
    found = api.get(endpoint_path(subscription_id(api, subscription), resource_group, name), NETWORK_API)
    show(flatten(found), output, query, COLUMNS)


@private_endpoint_app.command("list")
def list_endpoints(resource_group: Annotated[Optional[str], typer.Option(
                       "--resource-group", "-g", help="Name of the resource group.")] = None,
                   subscription: Subscription = None, output: Output = OutputFormat.json,
                   query: Query = None) -> None:
    """List private endpoints, in a resource group or in the whole subscription."""
    api = client()
    sub = subscription_id(api, subscription)
    where = endpoint_path(sub, resource_group) if resource_group else path(
        "subscriptions", sub, "providers", "Microsoft.Network", "privateEndpoints")
    show([flatten(e) for e in api.value(where, NETWORK_API)], output, query, COLUMNS)


@private_endpoint_app.command("delete")
def delete(name: Name, resource_group: ResourceGroup, subscription: Subscription = None) -> None:
    """Delete a private endpoint; its listener closes at once."""
    api = client()
    api.request("DELETE", endpoint_path(subscription_id(api, subscription), resource_group, name),
                api_version=NETWORK_API)
