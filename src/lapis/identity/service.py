"""The token service: who may have a token, and minting and checking tokens.

`setup_identity(services)` builds one `Identity` per process (signing keys
loaded or created, the identity header and the admin's object id read from
the `settings` table). Routes translate HTTP to the methods here; the data
plane and ARM call `verify_bearer`.

Which identity a managed-identity request that names none gets (Lapis's
choice): the server's own *workload* identity, a system-assigned identity
registered on first use with resource id `/lapis/workload`. Every process
that can reach the server's managed-identity endpoints (and, for the App
Service style, knows the identity header) acts as that workload. With
`client_id`, `object_id`/`principal_id` or `mi_res_id`/`msi_res_id` the
request gets the named identity: a user-assigned one, or an account's
system-assigned one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from lapis.errors import catalogue as errors
from lapis.identity import tokens
from lapis.identity.principals import SYSTEM_ASSIGNED, ManagedIdentity, Principals
from lapis.identity.signing import TOKEN_LIFETIME_S, SigningKeys
from lapis.identity.tokens import Claims
from lapis.services import ADMIN_PRINCIPAL, DEFAULT_TENANT, Services
from lapis.store.sql import SqlStore

CLOCK_SKEW_S = 60.0  # leeway on exp/nbf when checking bearer tokens
ALIAS_TENANTS = ("common", "organizations")
RESERVED_SCOPES = {"openid", "profile", "offline_access"}


def account_arm_id(sub: str, group: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"


@dataclass(slots=True)
class Identity:
    """Everything the token service holds for one process."""

    keys: SigningKeys
    principals: Principals
    store: SqlStore
    tenant: str
    issuer_base: str
    identity_header: str
    admin_object_id: str
    lifetime_s: int = TOKEN_LIFETIME_S

    # -- tenants -------------------------------------------------------------------

    async def resolve_tenant(self, tenant: str, trace_id: str = "", correlation_id: str = "") -> str:
        """The tenant id a path segment names (`common` and `organizations` mean the local one)."""
        if tenant.lower() in ALIAS_TENANTS or tenant.lower() == self.tenant:
            return self.tenant
        rows = await self.store.db.fetch("SELECT DISTINCT tenant_id FROM subscriptions")
        if tenant.lower() in {str(r["tenant_id"]).lower() for r in rows}:
            return tenant.lower()
        raise errors.oauth_tenant_not_found(tenant, trace_id, correlation_id)

    # -- minting and checking ----------------------------------------------------

    async def mint(self, *, subject_oid: str, app_id: str, audience: str, tenant: str | None = None,
                   extra: Mapping[str, Any] | None = None) -> tuple[str, int]:
        """A signed token and its expiry (epoch seconds)."""
        await self.keys.refresh()
        return tokens.issue(self.keys, tenant=tenant or self.tenant, subject_oid=subject_oid, app_id=app_id,
                            audience=audience, lifetime_s=self.lifetime_s, issuer_base=self.issuer_base,
                            extra=extra)

    async def verify(self, token: str, audiences: Iterable[str], now: float | None = None) -> Claims:
        """Claims of a token we signed, for one of `audiences`; InvalidToken otherwise."""
        kid = tokens.unverified_kid(token)
        await self.keys.find(kid)  # picks up another replica's new key
        return tokens.verify(self.keys, token, audiences=audiences, now=now, leeway_s=CLOCK_SKEW_S)

    # -- OAuth2 client credentials --------------------------------------------------

    async def client_credentials(self, tenant: str, form: Mapping[str, str], trace_id: str = "",
                                 correlation_id: str = "") -> dict[str, Any]:
        """The token endpoint's answer to a form; raises Entra's OAuth2 errors."""
        ids = (trace_id, correlation_id)
        tid = await self.resolve_tenant(tenant, *ids)
        grant = (form.get("grant_type") or "").strip()
        if not grant:
            raise errors.oauth_missing_parameter("grant_type", *ids)
        if grant != "client_credentials":
            raise errors.oauth_unsupported_grant_type(grant, *ids)
        client_id = (form.get("client_id") or "").strip()
        if not client_id:
            raise errors.oauth_missing_parameter("client_id", *ids)
        scope = (form.get("scope") or "").strip()
        wanted = [s for s in scope.split() if s.lower() not in RESERVED_SCOPES]
        if not wanted:
            raise errors.oauth_missing_parameter("scope", *ids)
        if len(wanted) != 1 or not wanted[0].lower().endswith("/.default"):
            raise errors.oauth_invalid_scope(scope, *ids)
        audience = tokens.resource_audience(wanted[0])
        if audience is None:
            raise errors.oauth_invalid_resource(wanted[0][: -len("/.default")], tid, *ids)
        secret = form.get("client_secret")
        if not secret:
            raise errors.oauth_missing_client_secret(*ids)
        if await self.principals.sp(client_id) is None:
            raise errors.oauth_unknown_client(client_id, tid, *ids)
        principal = await self.principals.check_secret(client_id, secret)
        if principal is None:
            raise errors.oauth_invalid_client(client_id, *ids)
        token, _ = await self.mint(subject_oid=principal.object_id, app_id=principal.app_id, audience=audience,
                                   tenant=tid, extra={"idtyp": "app"})
        return {"token_type": "Bearer", "expires_in": self.lifetime_s, "ext_expires_in": self.lifetime_s,
                "access_token": token}

    async def admin_token(self, resource: str) -> tuple[str, int]:
        """A token for the local admin (the CLI's `account get-access-token`), as az's tokens look."""
        audience = tokens.resource_audience(resource)
        if audience is None:
            raise errors.oauth_invalid_resource(resource, self.tenant)
        extra = {"idtyp": "user", "upn": ADMIN_PRINCIPAL, "unique_name": ADMIN_PRINCIPAL, "name": "Lapis admin",
                 "scp": "user_impersonation"}
        return await self.mint(subject_oid=self.admin_object_id, app_id=tokens.AZURE_CLI_APP_ID, audience=audience,
                               extra=extra)

    # -- managed identity --------------------------------------------------------

    async def sync_account_identities(self) -> None:
        """Register every account's system-assigned identity; drop those of accounts that lost theirs."""
        wanted: dict[str, tuple[str, str]] = {}
        for account in await self.store.accounts():
            ident = account.doc.get("identity") or {}
            if "SystemAssigned" in str(ident.get("type") or "") and ident.get("principalId"):
                arm_id = account_arm_id(account.subscription_id, account.group, account.name)
                wanted[arm_id.lower()] = (arm_id, str(ident["principalId"]))
        for arm_id, principal_id in wanted.values():
            await self.principals.ensure_system_assigned(arm_id, principal_id)
        for mi in await self.principals.managed_identities(SYSTEM_ASSIGNED):
            if mi.resource_id.lower().startswith("/subscriptions/") and mi.resource_id.lower() not in wanted:
                await self.principals.delete(mi.resource_id)

    async def find_managed_identity(self, *, client_id: str | None = None, object_id: str | None = None,
                                    resource_id: str | None = None) -> ManagedIdentity:
        """The identity a managed-identity request names, or the workload identity when it names none."""
        if not (client_id or object_id or resource_id):
            return await self.principals.workload()
        await self.sync_account_identities()
        if client_id:
            found = await self.principals.by_client_id(client_id)
        elif object_id:
            found = await self.principals.by_object_id(object_id)
        else:
            found = await self.principals.by_resource_id(str(resource_id))
        if found is None:
            raise errors.mi_identity_not_found()
        return found

    async def managed_identity_token(self, resource: str | None, **selector: str | None
                                     ) -> tuple[str, int, ManagedIdentity]:
        """(token, expires_on, identity) for a managed-identity request."""
        if not resource:
            raise errors.mi_missing_parameter("resource")
        audience = tokens.resource_audience(resource)
        if audience is None:
            raise errors.mi_invalid_resource(resource, self.tenant)
        identity = await self.find_managed_identity(**selector)
        token, expires_on = await self.mint(subject_oid=identity.principal_id, app_id=identity.client_id,
                                            audience=audience, tenant=identity.tenant_id,
                                            extra={"idtyp": "app", "xms_mirid": identity.resource_id})
        return token, expires_on, identity


async def setup_identity(services: Services) -> Identity:
    """Build the process's token service: keys loaded (or the first one made), settings read."""
    store = services.store
    keys = await SigningKeys.load_or_create(store.db, sealer=store.keyring)  # private keys sealed at rest
    header = await store.setting("identity_header", str(uuid.uuid4()))
    admin_oid = await store.setting("admin_object_id", str(uuid.uuid4()))
    identity = Identity(keys=keys, principals=Principals(store.db, DEFAULT_TENANT), store=store,
                        tenant=DEFAULT_TENANT, issuer_base=services.settings.base_url, identity_header=header,
                        admin_object_id=admin_oid)
    await identity.principals.workload()
    return identity


async def verify_bearer(services: Services, token: str, audiences: Iterable[str], *,
                        identity: Identity | None = None) -> Claims:
    """Check a bearer token for the data plane or ARM; raises tokens.InvalidToken.

    The Identity comes from `identity=`, else from a `services.identity`
    attribute (the lead may add that field to Services and set it from
    `setup_identity` at start-up; `add_routes` fills it when it exists)."""
    found = identity or getattr(services, "identity", None)
    if found is None:
        raise RuntimeError("the token service is not set up: call setup_identity() at start-up")
    return await found.verify(token, audiences)
