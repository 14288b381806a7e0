"""Identity routes: HTTP in, a call to the token service, JSON out.

Entra-like authority (issuer base = the server's base URL):
    GET  /{tenant}/v2.0/.well-known/openid-configuration
    GET  /{tenant}/discovery/v2.0/keys                       the JWKS
    POST /{tenant}/oauth2/v2.0/token                         client_credentials (form-encoded)
Managed identity, plain HTTP (both let DefaultAzureCredential() work unchanged):
    GET  /msi/token                                          App Service style: X-IDENTITY-HEADER
    GET  /metadata/identity/oauth2/token[/]                  IMDS style: Metadata: true
Lapis's admin API (the admin bearer token, as the rest of /lapis/admin):
    POST /lapis/admin/servicePrincipals                      {"displayName"} -> appId, password, tenant
    GET  /lapis/admin/servicePrincipals
    POST /lapis/admin/userAssignedIdentities                 {"subscriptionId"?, "resourceGroup", "name"}
    GET  /lapis/admin/managedIdentities
    POST /lapis/admin/token                                  {"resource"}: a token for the admin
    GET  /lapis/admin/identity/environment                   the variables a workload exports
    POST /lapis/admin/signingKeys/rotate
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Callable

from aiohttp import web

from lapis.errors import catalogue as errors
from lapis.identity.principals import ManagedIdentity
from lapis.identity.service import Identity, setup_identity
from lapis.identity.tokens import resource_audience
from lapis.management import tenancy
from lapis.management.routes import arm_json, check_admin, read_json
from lapis.requestkeys import state_of
from lapis.services import DEFAULT_SUBSCRIPTION, Services

IDENTITY = web.AppKey("identity", Identity)
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json",
                        charset="utf-8", headers=headers)


def openid_configuration(base: str, tenant: str, tenant_id: str) -> dict[str, Any]:
    """Entra's v2.0 discovery document for `tenant` (a path segment, e.g. "common")."""
    root = f"{base}/{tenant}"
    issuer_tenant = "{tenantid}" if tenant.lower() in ("common", "organizations") else tenant_id
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{issuer_tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
                             "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "tenant_region_scope": None,
        "cloud_instance_name": "lapis.local",
        "cloud_graph_host_name": "graph.lapis.local",
        "msgraph_host": "graph.lapis.local",
        "rbac_url": base,
    }


def environment(base: str, header: str) -> dict[str, str]:
    """What a workload exports to get managed-identity tokens from this server."""
    return {"IDENTITY_ENDPOINT": f"{base}/msi/token", "IDENTITY_HEADER": header,
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": base}


def user_assigned_shape(mi: ManagedIdentity, location: str) -> dict[str, Any]:
    """A Microsoft.ManagedIdentity/userAssignedIdentities resource as ARM returns it."""
    return {"id": mi.resource_id, "name": mi.name, "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "location": location, "tags": {},
            "properties": {"tenantId": mi.tenant_id, "principalId": mi.principal_id, "clientId": mi.client_id}}


def add_routes(app: web.Application, services: Callable[[], Services]) -> None:
    """Register the identity routes; the token service is built at start-up (after Services)."""

    async def start(app: web.Application) -> None:
        if IDENTITY not in app:
            app[IDENTITY] = await setup_identity(services())
        if hasattr(type(services()), "identity"):  # the lead's Services.identity field, once it exists
            services().identity = app[IDENTITY]  # type: ignore[attr-defined]

    app.on_startup.append(start)

    def ident(request: web.Request) -> Identity:
        return request.app[IDENTITY]

    def ids(request: web.Request) -> tuple[str, str]:
        return state_of(request).request_id, request.headers.get("client-request-id", "")

    async def discovery(request: web.Request) -> web.Response:
        identity = ident(request)
        tenant = request.match_info["tenant"]
        tenant_id = await identity.resolve_tenant(tenant, *ids(request))
        return _json(openid_configuration(identity.issuer_base, tenant, tenant_id))

    async def jwks(request: web.Request) -> web.Response:
        identity = ident(request)
        await identity.resolve_tenant(request.match_info["tenant"], *ids(request))
        await identity.keys.refresh()
        return _json(identity.keys.jwks())

    async def token(request: web.Request) -> web.Response:
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}
        answer = await ident(request).client_credentials(request.match_info["tenant"], form, *ids(request))
        return _json(answer, headers=NO_STORE)

    def selector(request: web.Request, resource_key: str) -> dict[str, str | None]:
        q = request.query
        return {"client_id": q.get("client_id"), "object_id": q.get("object_id") or q.get("principal_id"),
                "resource_id": q.get(resource_key) or q.get("mi_res_id") or q.get("msi_res_id")}

    async def app_service(request: web.Request) -> web.Response:
        identity = ident(request)
        presented = request.headers.get("X-IDENTITY-HEADER", "")
        if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), identity.identity_header.encode()):
            raise errors.mi_identity_header_invalid()
        if not request.query.get("api-version"):
            raise errors.mi_missing_parameter("api-version")
        resource = request.query.get("resource")
        access, expires_on, mi = await identity.managed_identity_token(resource, **selector(request, "mi_res_id"))
        return _json({"access_token": access, "expires_on": expires_on, "resource": resource,
                      "token_type": "Bearer", "client_id": mi.client_id}, headers=NO_STORE)

    async def imds(request: web.Request) -> web.Response:
        identity = ident(request)
        if request.headers.get("Metadata", "").lower() != "true":
            raise errors.mi_metadata_header_missing()
        if not request.query.get("api-version"):
            raise errors.mi_missing_parameter("api-version")
        resource = request.query.get("resource")
        access, expires_on, mi = await identity.managed_identity_token(resource, **selector(request, "msi_res_id"))
        lifetime = str(identity.lifetime_s)
        return _json({"access_token": access, "client_id": mi.client_id, "expires_in": lifetime,
                      "expires_on": str(expires_on), "ext_expires_in": lifetime,
                      "not_before": str(expires_on - identity.lifetime_s), "resource": resource,
                      "token_type": "Bearer"}, headers=NO_STORE)

    # -- admin ---------------------------------------------------------------------

    async def create_sp(request: web.Request) -> web.Response:
        check_admin(services(), request)
        body = await read_json(request)
        name = str(body.get("displayName") or "").strip()
        if not name:
            raise errors.arm_bad_request("displayName is required.")
        identity = ident(request)
        app_id, object_id, password = await identity.principals.create_sp(name)
        return arm_json({"appId": app_id, "objectId": object_id, "displayName": name, "password": password,
                         "tenant": identity.tenant}, 201)

    async def list_sps(request: web.Request) -> web.Response:
        check_admin(services(), request)
        found = await ident(request).principals.sps()
        return arm_json({"value": [{"appId": p.app_id, "objectId": p.object_id, "displayName": p.display_name,
                                    "tenant": p.tenant_id, "createdAt": p.created_at} for p in found]})

    async def create_uami(request: web.Request) -> web.Response:
        check_admin(services(), request)
        body = await read_json(request)
        sub = str(body.get("subscriptionId") or DEFAULT_SUBSCRIPTION)
        group_name, name = str(body.get("resourceGroup") or ""), str(body.get("name") or "").strip()
        if not group_name or not name:
            raise errors.arm_bad_request("resourceGroup and name are required.")
        group = await tenancy.require_group(services(), sub, group_name)
        mi, created = await ident(request).principals.create_user_assigned(sub, group.name, name)
        return arm_json(user_assigned_shape(mi, str(body.get("location") or group.location)), 201 if created else 200)

    async def list_mis(request: web.Request) -> web.Response:
        check_admin(services(), request)
        identity = ident(request)
        await identity.sync_account_identities()
        found = await identity.principals.managed_identities()
        return arm_json({"value": [{"principalId": m.principal_id, "clientId": m.client_id, "tenantId": m.tenant_id,
                                    "type": m.kind, "resourceId": m.resource_id, "name": m.name} for m in found]})

    async def admin_token(request: web.Request) -> web.Response:
        check_admin(services(), request)
        body = await read_json(request)
        identity = ident(request)
        resource = str(body.get("resource") or "https://management.core.windows.net/")
        if resource_audience(resource) is None:
            raise errors.arm_bad_request(f"AADSTS500011: The resource principal named {resource} was not found in "
                                         f"the tenant named {identity.tenant}.", "invalid_resource")
        access, expires_on = await identity.admin_token(resource)
        return arm_json({"accessToken": access, "expiresOn": expires_on, "tenant": identity.tenant,
                         "tokenType": "Bearer"})

    async def env(request: web.Request) -> web.Response:
        check_admin(services(), request)
        identity = ident(request)
        return arm_json(environment(identity.issuer_base, identity.identity_header))

    async def rotate(request: web.Request) -> web.Response:
        check_admin(services(), request)
        keys = ident(request).keys
        key = await keys.rotate()
        return arm_json({"kid": key.kid, "jwks": keys.jwks()})

    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", discovery)
    app.router.add_get("/{tenant}/discovery/v2.0/keys", jwks)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_get("/msi/token", app_service)
    app.router.add_get("/metadata/identity/oauth2/token", imds)
    app.router.add_get("/metadata/identity/oauth2/token/", imds)
    app.router.add_post("/lapis/admin/servicePrincipals", create_sp)
    app.router.add_get("/lapis/admin/servicePrincipals", list_sps)
    app.router.add_post("/lapis/admin/userAssignedIdentities", create_uami)
    app.router.add_get("/lapis/admin/managedIdentities", list_mis)
    app.router.add_post("/lapis/admin/token", admin_token)
    app.router.add_get("/lapis/admin/identity/environment", env)
    app.router.add_post("/lapis/admin/signingKeys/rotate", rotate)
