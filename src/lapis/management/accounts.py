"""Accounts: create, update, delete, keys.

Every committed change is pushed into the data-plane directory before the
ARM answer goes out, so the next data-plane request sees it (a regenerated
key stops working at once).

`properties.encryption` (customer-managed keys) is checked and applied by
lapis.keyvault.cmk. While an account's customer-managed key is disabled its
keys cannot be opened (`Account.locked`): PUT, PATCH and regenerateKey answer
409 KeyVaultKeyDisabled, and reads still work.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from lapis.dataplane.network import allowed_networks
from lapis.errors import catalogue as errors
from lapis.errors import keyvault as kv_errors
from lapis.keyvault import cmk
from lapis.management import tenancy
from lapis.services import Services
from lapis.store.records import Account
from lapis.store.sql import Conflict, Locked

KINDS = ("OpenAI", "AIServices")
SKUS = ("S0",)
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$", re.IGNORECASE)
# Properties a user may write (§6.3); the rest of `properties` is read-only.
WRITABLE = ("customSubDomainName", "publicNetworkAccess", "networkAcls", "disableLocalAuth", "encryption",
            "userOwnedStorage", "apiProperties", "restrictOutboundNetworkAccess", "allowedFqdnList",
            "dynamicThrottlingEnabled")


def new_key() -> str:
    """32 hex characters, the classic Cognitive Services key format."""
    return secrets.token_hex(16)


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


def _identity(requested: Any, existing: Any, tenant: str) -> Any:
    """SystemAssigned identities get a principal id once and keep it."""
    if not requested:
        return existing
    kind = str(requested.get("type") or "None")
    if kind == "None":
        return None
    result = dict(requested)
    if "SystemAssigned" in kind:
        old = existing or {}
        result["principalId"] = old.get("principalId") or str(uuid.uuid4())
        result["tenantId"] = tenant
    return result


def _check_properties(props: dict[str, Any]) -> None:
    pna = props.get("publicNetworkAccess")
    if pna is not None and str(pna) not in ("Enabled", "Disabled"):
        raise errors.arm_bad_request(f"The value '{pna}' of publicNetworkAccess is invalid. "
                                     "Valid values are 'Enabled' and 'Disabled'.", "InvalidResourceProperties")
    acls = props.get("networkAcls")
    if acls is not None:
        if not isinstance(acls, dict) or str(acls.get("defaultAction") or "Allow") not in ("Allow", "Deny"):
            raise errors.arm_bad_request("The networkAcls.defaultAction must be 'Allow' or 'Deny'.",
                                         "InvalidNetworkRuleSet")
        try:
            allowed_networks({**acls, "defaultAction": "Deny"})
        except (ValueError, AttributeError) as exc:
            raise errors.arm_bad_request(f"The IP rule '{exc}' is not a valid IPv4 address or CIDR range.",
                                         "InvalidNetworkRuleSet") from None
    sub = props.get("customSubDomainName")
    if sub is not None and not _SUBDOMAIN.match(str(sub)):
        raise errors.arm_bad_request(f"The custom subdomain name '{sub}' is invalid.", "InvalidSubDomainName")


async def put(services: Services, sub_id: str, group: str, name: str, body: dict[str, Any]) -> tuple[Account, bool]:
    """PUT an account (create or replace its writable parts). True when created."""
    grp = await tenancy.require_group(services, sub_id, group)
    if not _ACCOUNT_NAME.match(name):
        raise errors.invalid_account_name()
    await tenancy.require_registered(services, sub_id)
    existing = await services.store.account(sub_id, grp.name, name)
    kind = str(body.get("kind") or (existing.kind if existing else ""))
    sku = str((body.get("sku") or {}).get("name") or (existing.sku_name if existing else ""))
    location = str(body.get("location") or (existing.location if existing else "")).replace(" ", "").lower()
    if kind not in KINDS:
        raise errors.arm_bad_request(f"The kind '{kind}' is not supported. Supported kinds: {', '.join(KINDS)}.",
                                     "InvalidKind" if kind else "KindRequired")
    if sku not in SKUS:
        raise errors.arm_bad_request(f"The SKU '{sku}' is not supported for kind '{kind}'.", "InvalidSkuName")
    if services.catalogue.region_display(location) is None:
        raise errors.arm_bad_request(f"The location '{location}' is not available for resource type "
                                     f"'Microsoft.CognitiveServices/accounts'.", "LocationNotAvailableForResourceType")
    subscription = await tenancy.require_subscription(services, sub_id)
    if not subscription.openai_approved:
        raise errors.special_feature_required(sku, kind)
    props = {k: v for k, v in (body.get("properties") or {}).items() if k in WRITABLE}
    _check_properties(props)
    await cmk.check(services, props)  # properties.encryption: normalized, its key exists and is enabled
    if existing:
        _unlocked(existing)
        if existing.kind != kind:
            raise errors.arm(409, "CannotChangeKind", "The kind of an existing account cannot be changed.")
        old_sub = existing.subdomain
        if old_sub and props.get("customSubDomainName", old_sub).lower() != old_sub.lower():
            raise errors.arm_bad_request("The custom subdomain name of an account cannot be changed once set.",
                                         "CustomSubDomainNameCannotBeChanged")
    now = tenancy.now()
    account = Account(
        id=existing.id if existing else uuid.uuid4().hex,
        subscription_id=sub_id, group=grp.name, name=existing.name if existing else name, kind=kind,
        sku_name=sku, location=existing.location if existing else location,
        key1=existing.key1 if existing else new_key(), key2=existing.key2 if existing else new_key(),
        etag=new_etag(),
        doc={"properties": props, "tags": body.get("tags"),
             "identity": _identity(body.get("identity"), existing.doc.get("identity") if existing else None,
                                   subscription.tenant_id)},
        created_at=existing.created_at if existing else now, updated_at=now,
    )
    return account, await _save(services, account)


async def patch(services: Services, sub_id: str, group: str, name: str, body: dict[str, Any]) -> Account:
    """PATCH: merge tags, sku and writable properties into the stored account."""
    account = await require(services, sub_id, group, name)
    props = dict(account.properties)
    changes = {k: v for k, v in (body.get("properties") or {}).items() if k in WRITABLE}
    _check_properties(changes)
    _unlocked(account)
    await cmk.check(services, changes)
    if "customSubDomainName" in changes and account.subdomain and \
            str(changes["customSubDomainName"]).lower() != account.subdomain.lower():
        raise errors.arm_bad_request("The custom subdomain name of an account cannot be changed once set.",
                                     "CustomSubDomainNameCannotBeChanged")
    props.update(changes)
    account.doc["properties"] = props
    if "tags" in body:
        account.doc["tags"] = body["tags"]
    if body.get("identity") is not None:
        sub = await tenancy.require_subscription(services, sub_id)
        account.doc["identity"] = _identity(body["identity"], account.doc.get("identity"), sub.tenant_id)
    account.etag = new_etag()
    account.updated_at = tenancy.now()
    await _save(services, account)
    return account


def _unlocked(account: Account) -> None:
    """Writes need the account's keys: refused while its customer-managed key is disabled."""
    if account.locked:
        raise kv_errors.account_locked(account.name)


async def _save(services: Services, account: Account) -> bool:
    try:
        created = await services.store.save_account(account)
    except Conflict:
        raise errors.custom_domain_in_use(account.subdomain or "") from None
    except Locked:
        raise kv_errors.account_locked(account.name) from None
    await cmk.apply(services, account)  # its data key wrapped as properties.encryption says
    await services.refresh_account(account.id)
    return created


async def require(services: Services, sub_id: str, group: str, name: str) -> Account:
    grp = await tenancy.require_group(services, sub_id, group)
    account = await services.store.account(sub_id, grp.name, name)
    if account is None:
        raise errors.resource_not_found_arm("Microsoft.CognitiveServices/accounts", name, group)
    return account


async def require_keys(services: Services, sub_id: str, group: str, name: str) -> Account:
    """`require`, for callers that need the keys (listKeys): 409 while they cannot be opened."""
    account = await require(services, sub_id, group, name)
    _unlocked(account)
    return account


async def delete(services: Services, sub_id: str, group: str, name: str) -> bool:
    """Delete the account and its deployments. Lapis purges at once (Azure
    keeps a soft-deleted account for 48 h; not modelled yet)."""
    await tenancy.require_group(services, sub_id, group)
    account = await services.store.account(sub_id, group, name)
    if account is None:
        return False
    await services.store.delete_account(account.id)
    await services.refresh_account(account.id)  # gone here and on every replica
    return True


async def regenerate(services: Services, sub_id: str, group: str, name: str, key_name: Any) -> Account:
    if key_name not in ("Key1", "Key2"):
        raise errors.invalid_key_name(str(key_name))
    account = await require(services, sub_id, group, name)
    _unlocked(account)
    if key_name == "Key1":
        account.key1 = new_key()
    else:
        account.key2 = new_key()
    account.updated_at = tenancy.now()
    await _save(services, account)
    return account
