"""ARM routes for private endpoints (Microsoft.Network) and an account's side of them.

    PUT    {group}/providers/Microsoft.Network/privateEndpoints/{name}    201 created / 200 replaced
    GET    {group}/providers/Microsoft.Network/privateEndpoints/{name}    200, or 404 ResourceNotFound
    DELETE {group}/providers/Microsoft.Network/privateEndpoints/{name}    200, or 204 when there was none
    GET    {group}/providers/Microsoft.Network/privateEndpoints           {"value": [...]}
    GET    /subscriptions/{sub}/providers/Microsoft.Network/privateEndpoints
    GET    {account}/privateEndpointConnections[/{name}]
    GET    {account}/privateLinkResources

The PUT body is Azure's: one entry of `privateLinkServiceConnections` (or
`manualPrivateLinkServiceConnections`; both are approved at once here) whose
`privateLinkServiceId` is an account's id and `groupIds` is ["account"]. The
endpoint listens on `ipConfigurations[0].properties.privateIPAddress` (or
Lapis's `lapisListener.address`; default 127.0.0.2) and on Lapis's
`lapisListener.port` (default: a port the OS finds free, kept on later PUTs).
`subnet` is echoed as given: Lapis has no virtual networks to check it against,
nor does it ask for Microsoft.Network to be registered.

Refusals, all 400 in ARM's envelope (Lapis's codes where no capture exists):
`InvalidResourceName`, `LocationRequired`, `InvalidRequestFormat` (no single
connection), `InvalidGroupId`, `InvalidPrivateLinkServiceId` (not an existing
account), `InvalidPrivateIPAddress`, `InvalidRequestContent` (a bad port), and
`PrivateIPAddressInUse` (another endpoint has the address and port, or this
process cannot listen there). The answer comes once this process listens.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from lapis.errors import catalogue as errors
from lapis.management import accounts, tenancy
from lapis.management.router import ArmRouter
from lapis.management.routes import ACCT, Ctx, arm_json
from lapis.management.shapes import account_id
from lapis.network import shapes
from lapis.network.private_endpoints import DEFAULT_ADDRESS, ListenerUnavailable, free_port, normalize_address
from lapis.network.store import ListenerTaken, PrivateEndpoint
from lapis.services import Services
from lapis.store.records import Account

GROUP = "/subscriptions/{sub}/resourceGroups/{rg}"
ENDPOINTS = f"{GROUP}/providers/Microsoft.Network/privateEndpoints"
_NAME = re.compile(r"^\w[\w.-]{0,78}\w$|^\w$")
_ACCOUNT_ID = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.CognitiveServices"
                         r"/accounts/([^/]+)/?$", re.IGNORECASE)


def _bad(code: str, message: str) -> Exception:
    return errors.arm_bad_request(message, code)


def _connection(props: dict[str, Any]) -> dict[str, Any]:
    links = [*(props.get("privateLinkServiceConnections") or []), *(props.get("manualPrivateLinkServiceConnections")
                                                                     or [])]
    if len(links) != 1 or not isinstance(links[0], dict):
        raise _bad("InvalidRequestFormat", "A private endpoint needs exactly one private link service connection.")
    link = links[0]
    inner = link.get("properties") if isinstance(link.get("properties"), dict) else {}
    groups = inner.get("groupIds") or []
    if [str(g).lower() for g in groups] != [shapes.GROUP_ID]:
        raise _bad("InvalidGroupId", f"The group ids {groups} are invalid: an Azure OpenAI account offers the group "
                   f"id '{shapes.GROUP_ID}'.")
    return {"name": str(link.get("name") or "connection"), "privateLinkServiceId": inner.get("privateLinkServiceId"),
            "requestMessage": inner.get("requestMessage")}


async def _target(services: Services, service_id: Any) -> Account:
    match = _ACCOUNT_ID.match(str(service_id or ""))
    account = await services.store.account(*match.groups()) if match else None
    if account is None:
        raise _bad("InvalidPrivateLinkServiceId", f"The private link service id '{service_id}' is not the id of an "
                   "existing Microsoft.CognitiveServices account.")
    return account


def _listener(props: dict[str, Any], existing: PrivateEndpoint | None) -> tuple[str, int]:
    """(address, port): port 0 means 'choose one', decided after the address."""
    lapis = props.get("lapisListener") if isinstance(props.get("lapisListener"), dict) else {}
    configs = props.get("ipConfigurations") or []
    first = configs[0].get("properties") if configs and isinstance(configs[0], dict) else None
    given = (first or {}).get("privateIPAddress") or lapis.get("address") or DEFAULT_ADDRESS
    try:
        address = normalize_address(str(given))
    except ValueError:
        raise _bad("InvalidPrivateIPAddress", f"The private IP address '{given}' is invalid: give one IPv4 or IPv6 "
                   "address this machine can listen on.") from None
    port = lapis.get("port") or 0
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise _bad("InvalidRequestContent", f"The port '{port}' is invalid: give a number from 1 to 65535.")
    if not port and existing is not None and existing.address == address:
        port = existing.port
    return address, port


async def _open(services: Services, endpoint: PrivateEndpoint, existing: PrivateEndpoint | None) -> bool:
    """Store the endpoint and listen on it here; on failure, put back what was there."""
    manager = services.private_endpoints
    taken = _bad("PrivateIPAddressInUse", f"The private IP address {endpoint.address} and port {endpoint.port} are "
                 "already in use.")
    try:
        created = await manager.store.put(endpoint)
    except ListenerTaken:
        raise taken from None
    await manager.sync()
    if manager.attached and not manager.is_open(*endpoint.listener):
        if existing is not None:
            await manager.store.put(existing)
        else:
            await manager.store.delete(endpoint.subscription_id, endpoint.resource_group, endpoint.name)
        await manager.sync()
        raise taken
    return created


async def put_endpoint(c: Ctx) -> web.Response:
    group = await tenancy.require_group(c.services, c.p("sub"), c.p("rg"))
    name = c.p("name")
    if not _NAME.match(name):
        raise _bad("InvalidResourceName", f"Resource name {name} is invalid. The name can be up to 80 characters "
                   "long. It must begin with a word character, and it must end with a word character or with '_'. "
                   "The name may contain word characters or '.', '-', '_'.")
    location = str(c.body.get("location") or "").replace(" ", "").lower()
    if not location:
        raise _bad("LocationRequired", "The location property is required for this definition.")
    props = c.body.get("properties") if isinstance(c.body.get("properties"), dict) else {}
    link = _connection(props)
    account = await _target(c.services, link["privateLinkServiceId"])
    link["privateLinkServiceId"] = account_id(account)
    store = c.services.private_endpoints.store
    existing = await store.get(c.p("sub"), group.name, name)
    address, port = _listener(props, existing)
    if not port:
        try:
            port = free_port(address)
        except ListenerUnavailable as exc:
            raise _bad("PrivateIPAddressInUse", f"Lapis cannot listen on {address}: {exc}.") from None
    configs = [dict(cfg) for cfg in props.get("ipConfigurations") or [] if isinstance(cfg, dict)]
    if configs:
        configs[0]["properties"] = {**(configs[0].get("properties") or {}), "privateIPAddress": address}
    now = tenancy.now()
    endpoint = PrivateEndpoint(
        subscription_id=c.p("sub"), resource_group=group.name, name=existing.name if existing else name,
        location=location, account_id=account.id, address=address, port=port,
        doc={"tags": c.body.get("tags"), "subnet": props.get("subnet"), "connection": link,
             "ipConfigurations": configs, "customNetworkInterfaceName": props.get("customNetworkInterfaceName"),
             "resourceGuid": existing.doc.get("resourceGuid") if existing else str(uuid.uuid4()),
             "etag": f'W/"{uuid.uuid4()}"'},
        created_at=existing.created_at if existing else now, updated_at=now)
    created = await _open(c.services, endpoint, existing)
    return arm_json(shapes.endpoint(endpoint, account, c.services.private_endpoints.scheme()), 201 if created else 200)


async def _shown(c: Ctx, endpoint: PrivateEndpoint) -> dict[str, Any]:
    account = await c.services.store.account_by_id(endpoint.account_id)
    return shapes.endpoint(endpoint, account, c.services.private_endpoints.scheme())


async def get_endpoint(c: Ctx) -> web.Response:
    group = await tenancy.require_group(c.services, c.p("sub"), c.p("rg"))
    endpoint = await c.services.private_endpoints.store.get(c.p("sub"), group.name, c.p("name"))
    if endpoint is None:
        raise errors.resource_not_found_arm(shapes.ENDPOINT_TYPE, c.p("name"), c.p("rg"))
    return arm_json(await _shown(c, endpoint))


async def list_endpoints(c: Ctx) -> web.Response:
    await tenancy.require_subscription(c.services, c.p("sub"))
    group = c.params.get("rg")
    if group is not None:
        await tenancy.require_group(c.services, c.p("sub"), group)
    found = await c.services.private_endpoints.store.in_scope(c.p("sub"), group)
    return arm_json({"value": [await _shown(c, e) for e in found]})


async def delete_endpoint(c: Ctx) -> web.Response:
    group = await tenancy.require_group(c.services, c.p("sub"), c.p("rg"))
    manager = c.services.private_endpoints
    deleted = await manager.store.delete(c.p("sub"), group.name, c.p("name"))
    await manager.sync()  # the listener is closed before the answer goes out
    return web.Response(status=200 if deleted else 204)


async def _account(c: Ctx) -> Account:
    return await accounts.require(c.services, c.p("sub"), c.p("rg"), c.p("account"))


async def list_connections(c: Ctx) -> web.Response:
    account = await _account(c)
    found = await c.services.private_endpoints.connections([account])
    return arm_json({"value": found.get(account.id, [])})


async def get_connection(c: Ctx) -> web.Response:
    account = await _account(c)
    for item in (await c.services.private_endpoints.connections([account])).get(account.id, []):
        if item["name"].lower() == c.p("name").lower():
            return arm_json(item)
    raise errors.resource_not_found_arm(f"{shapes.CONNECTION_TYPE.rsplit('/', 1)[0]}/{account.name}/"
                                        "privateEndpointConnections", c.p("name"), c.p("rg"))


async def link_resources(c: Ctx) -> web.Response:
    return arm_json(shapes.link_resources(await _account(c)))


def add_routes(r: ArmRouter) -> None:
    r.add("GET", "/subscriptions/{sub}/providers/Microsoft.Network/privateEndpoints", list_endpoints)
    r.add("GET", ENDPOINTS, list_endpoints)
    for method, handler in (("PUT", put_endpoint), ("GET", get_endpoint), ("DELETE", delete_endpoint)):
        r.add(method, f"{ENDPOINTS}/{{name}}", handler)
    r.add("GET", f"{ACCT}/privateEndpointConnections", list_connections)
    r.add("GET", f"{ACCT}/privateEndpointConnections/{{name}}", get_connection)
    r.add("GET", f"{ACCT}/privateLinkResources", link_resources)
