"""ARM JSON for private endpoints and their connections. No I/O.

    Microsoft.Network/privateEndpoints/{name}                 endpoint()
    {account}/privateEndpointConnections/{name}.{guid}         connection()
    {account}/privateLinkResources                             link_resources()

Azure's shapes (PrivateEndpoint in Microsoft.Network's spec, and
PrivateEndpointConnection in Microsoft.CognitiveServices') with Lapis's
values: connections are auto-approved, and the "network interface" is a name
only. `properties.lapisListener` is Lapis's own: where this endpoint listens
and the account's endpoint URL through it, which is what a client in the
"virtual network" would reach through DNS on Azure.
"""

from __future__ import annotations

from typing import Any

from lapis.management.shapes import account_id, endpoint_for
from lapis.network.store import PrivateEndpoint
from lapis.store.records import Account

ENDPOINT_TYPE = "Microsoft.Network/privateEndpoints"
CONNECTION_TYPE = "Microsoft.CognitiveServices/accounts/privateEndpointConnections"
GROUP_ID = "account"  # the one sub-resource an Azure OpenAI account offers to private link
DNS_ZONES = ("privatelink.cognitiveservices.azure.com", "privatelink.openai.azure.com",
             "privatelink.services.ai.azure.com")


def endpoint_id(endpoint: PrivateEndpoint) -> str:
    return (f"/subscriptions/{endpoint.subscription_id}/resourceGroups/{endpoint.resource_group}"
            f"/providers/{ENDPOINT_TYPE}/{endpoint.name}")


def connection_name(endpoint: PrivateEndpoint) -> str:
    """The name the account gives the connection: the endpoint's name and its resource guid."""
    return f"{endpoint.name}.{endpoint.doc.get('resourceGuid', '')}"


def listener_url(endpoint: PrivateEndpoint, scheme: str) -> str:
    host = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
    return f"{scheme}://{host}:{endpoint.port}"


def _state(account: Account | None) -> dict[str, str]:
    if account is None:
        return {"status": "Disconnected", "description": "The private link resource was deleted.",
                "actionsRequired": "None"}
    return {"status": "Approved", "description": "Auto-Approved", "actionsRequired": "None"}


def endpoint(ep: PrivateEndpoint, account: Account | None, scheme: str) -> dict[str, Any]:
    """The PrivateEndpoint resource; `account` is None once the bound account is gone."""
    rid = endpoint_id(ep)
    etag = ep.doc.get("etag")
    link = ep.doc.get("connection") or {}
    fqdn = f"{account.subdomain.lower()}.openai.azure.com" if account is not None and account.subdomain else None
    listener: dict[str, Any] = {"address": ep.address, "port": ep.port}
    if account is not None:
        listener["endpoint"] = endpoint_for(account, listener_url(ep, scheme))
    body: dict[str, Any] = {
        "name": ep.name,
        "id": rid,
        "etag": etag,
        "type": ENDPOINT_TYPE,
        "location": ep.location,
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": ep.doc.get("resourceGuid"),
            "privateLinkServiceConnections": [{
                "name": link.get("name"),
                "id": f"{rid}/privateLinkServiceConnections/{link.get('name')}",
                "etag": etag,
                "type": f"{ENDPOINT_TYPE}/privateLinkServiceConnections",
                "properties": {
                    "provisioningState": "Succeeded",
                    "privateLinkServiceId": link.get("privateLinkServiceId"),
                    "groupIds": [GROUP_ID],
                    "requestMessage": link.get("requestMessage"),
                    "privateLinkServiceConnectionState": _state(account),
                },
            }],
            "manualPrivateLinkServiceConnections": [],
            "customNetworkInterfaceName": ep.doc.get("customNetworkInterfaceName") or "",
            "subnet": ep.doc.get("subnet"),
            "ipConfigurations": ep.doc.get("ipConfigurations") or [],
            "networkInterfaces": [{"id": f"/subscriptions/{ep.subscription_id}/resourceGroups/{ep.resource_group}"
                                         f"/providers/Microsoft.Network/networkInterfaces/{ep.name}.nic."
                                         f"{ep.doc.get('resourceGuid')}"}],
            "customDnsConfigs": [{"fqdn": fqdn, "ipAddresses": [ep.address]}] if fqdn else [],
            "lapisListener": listener,
        },
    }
    if ep.doc.get("tags") is not None:
        body["tags"] = ep.doc["tags"]
    return body


def connection(ep: PrivateEndpoint, account: Account) -> dict[str, Any]:
    """The account's side of the link: one PrivateEndpointConnection."""
    name = connection_name(ep)
    return {
        "id": f"{account_id(account)}/privateEndpointConnections/{name}",
        "name": name,
        "type": CONNECTION_TYPE,
        "location": account.location,
        "etag": ep.doc.get("etag"),
        "properties": {
            "privateEndpoint": {"id": endpoint_id(ep)},
            "groupIds": [GROUP_ID],
            "privateLinkServiceConnectionState": _state(account),
            "provisioningState": "Succeeded",
        },
    }


def link_resources(account: Account) -> dict[str, Any]:
    return {"value": [{
        "id": f"{account_id(account)}/privateLinkResources/{GROUP_ID}",
        "name": GROUP_ID,
        "type": "Microsoft.CognitiveServices/accounts/privateLinkResources",
        "properties": {"groupId": GROUP_ID, "displayName": GROUP_ID, "requiredMembers": ["default"],
                       "requiredZoneNames": list(DNS_ZONES)},
    }]}
