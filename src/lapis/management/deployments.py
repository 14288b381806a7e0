"""Model deployments: the names every data-plane call targets.

The model and version must be in the catalogue, and the catalogue must offer
the deployment's SKU in the account's region; otherwise ARM's errors (§6.4
and docs/wire-decisions.md). Every create or scale-up draws on the
subscription's quota for the model and SKU in the account's location, and
fails with InsufficientQuota past it (lapis.management.quota).
"""

from __future__ import annotations

import re
from typing import Any

from lapis.errors import catalogue as errors
from lapis.management import accounts, quota, shapes, tenancy
from lapis.services import Services
from lapis.store.records import Account, Deployment

DEPLOYMENT_SKUS = ("Standard", "GlobalStandard", "DataZoneStandard", "ProvisionedManaged",
                   "GlobalProvisionedManaged", "DataZoneProvisionedManaged", "GlobalBatch", "DataZoneBatch")
MAX_DEPLOYMENTS = 32  # Standard deployments per resource (quotas-limits.md)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}[A-Za-z0-9]$|^[A-Za-z0-9]{2}$")
_UPGRADE = ("OnceNewDefaultVersionAvailable", "OnceCurrentVersionExpired", "NoAutoUpgrade")


def _capacity(sku: dict[str, Any]) -> int:
    """sku.capacity as an int; az sends it as a string ("10")."""
    raw = sku.get("capacity", 1)
    try:
        value = int(str(raw))
    except ValueError:
        raise errors.arm_bad_request(f"The capacity '{raw}' is invalid.", "InvalidCapacity") from None
    if value < 1:
        raise errors.arm_bad_request(f"The capacity '{raw}' is invalid. Capacity must be at least 1.",
                                     "InvalidCapacity")
    return value


async def put(services: Services, sub_id: str, group: str, account_name: str, name: str,
              body: dict[str, Any]) -> tuple[Account, Deployment, bool]:
    account = await accounts.require(services, sub_id, group, account_name)
    if not _NAME.match(name):
        raise errors.invalid_deployment_name()
    model_req = (body.get("properties") or {}).get("model") or {}
    fmt = str(model_req.get("format") or "OpenAI")
    model_name = str(model_req.get("name") or "")
    requested_version = model_req.get("version") or None
    model = services.catalogue.model(model_name) if fmt.lower() == "openai" else None
    version = model.version(requested_version) if model else None
    if model is None or version is None:
        raise errors.unknown_model(fmt, model_name, requested_version)
    sku_req = body.get("sku") or {}
    sku = str(sku_req.get("name") or "Standard")
    if sku not in DEPLOYMENT_SKUS or sku not in model.skus:
        raise errors.sku_not_for_model(model.name, version.version, sku)
    if not model.deployable(sku, account.location):
        raise errors.sku_not_in_region(model.name, version.version, sku, account.location)
    capacity = _capacity(sku_req)
    props = body.get("properties") or {}
    doc = {"raiPolicyName": props.get("raiPolicyName") or "Microsoft.DefaultV2",
           "versionUpgradeOption": props.get("versionUpgradeOption") if props.get("versionUpgradeOption") in _UPGRADE
           else "OnceNewDefaultVersionAvailable"}
    if isinstance(props.get("spilloverDeploymentName"), str) and props["spilloverDeploymentName"]:
        doc["spilloverDeploymentName"] = props["spilloverDeploymentName"]  # where 429s overflow (§3.5)
    # Read, check and write under the quota lock, so two PUTs cannot both take the last capacity.
    async with quota.capacity_lock(services, account.subscription_id, account.location):
        existing = await services.store.deployment(account.id, name)
        if existing is None and len(await services.store.deployments(account.id)) >= MAX_DEPLOYMENTS:
            raise errors.arm_bad_request(f"The account already has the maximum number of deployments "
                                         f"({MAX_DEPLOYMENTS}).", "InvalidDeploymentCount")
        held = existing.capacity if existing and (existing.model_name.lower(), existing.sku_name.lower()) == (
            model.name.lower(), sku.lower()) else 0
        await quota.check_capacity(services, account.subscription_id, account.location, model.name, sku, capacity,
                                   held)
        now = tenancy.now()
        dep = Deployment(
            account_id=account.id, name=existing.name if existing else name, model_format="OpenAI",
            model_name=model.name, model_version=version.version, sku_name=sku, capacity=capacity,
            etag=accounts.new_etag(), doc=doc, created_at=existing.created_at if existing else now, updated_at=now,
        )
        created = await services.store.save_deployment(dep)
    await services.refresh_account(account.id)
    return account, dep, created


async def patch(services: Services, sub_id: str, group: str, account_name: str, name: str,
                body: dict[str, Any]) -> tuple[Account, Deployment]:
    account, dep = await require(services, sub_id, group, account_name, name)
    merged = {"sku": {"name": dep.sku_name, "capacity": dep.capacity, **(body.get("sku") or {})},
              "properties": {"model": {"format": dep.model_format, "name": dep.model_name,
                                       "version": dep.model_version}, **dep.doc, **(body.get("properties") or {})}}
    account, dep, _ = await put(services, sub_id, group, account_name, dep.name, merged)
    return account, dep


async def require(services: Services, sub_id: str, group: str, account_name: str,
                  name: str) -> tuple[Account, Deployment]:
    account = await accounts.require(services, sub_id, group, account_name)
    dep = await services.store.deployment(account.id, name)
    if dep is None:
        raise errors.arm_resource_missing(f"{shapes.account_id(account)}/deployments/{name}")
    return account, dep


async def delete(services: Services, sub_id: str, group: str, account_name: str, name: str) -> bool:
    account = await accounts.require(services, sub_id, group, account_name)
    deleted = await services.store.delete_deployment(account.id, name)
    await services.refresh_account(account.id)
    return deleted
