"""Subscription quota: limits, usage, the InsufficientQuota check, increase requests.

What Azure does (wire reference §5.3-§5.5): quota is per subscription, per
region, per model and per deployment type, counted in thousands of TPM for
the Standard-type SKUs and in PTUs for the provisioned ones. Every
deployment's sku.capacity draws it down; creating or scaling a deployment
past it fails with ARM's 400 InsufficientQuota; the usages API lists
`currentValue` and `limit` per quota name `OpenAI.{Sku}.{model}`.

Where Lapis chose:
- Limits are the catalogue's default quota (0 where the model is not offered)
  unless an approved increase request set an override (store.quota).
- Usage is computed from the deployments, never stored, so a delete frees
  capacity at once. Azure keeps a deleted account's quota for 48 h until it
  is purged; Lapis has no soft delete and frees it immediately.
- Localized names follow the captures: Standard is "Tokens Per Minute
  (thousands) - GPT-4o-Mini" (the model name title-cased part by part, "gpt"
  as "GPT"; Azure's own casing varies from model to model); GlobalStandard and
  DataZoneStandard are "Tokens Per Minute (thousands) - gpt-4o - GlobalStandard"
  (the model name as is, the SKU appended). Azure pools provisioned quota
  across models ("Provisioned Managed Throughput Unit", "Global ...", "Data
  Zone ..."); Lapis keeps it per model, because the catalogue's defaults are
  per model, and names it "Provisioned Managed Throughput Unit - GPT-4o".
- InsufficientQuota's "available" is never below 0 (a limit can sit below the
  usage only if the catalogue's default shrank).
- Check and write are serialised by an asyncio.Lock per (subscription,
  location) in this process. Two Lapis replicas writing ARM at the same
  instant can each pass the check: cross-replica exactness of quota writes
  is not guaranteed (data-plane rate limits are; see lapis.ratelimit).
- Quota increase requests are Lapis's own API (quota_routes): Azure files them
  through the portal or Microsoft.Quota. A Lapis admin approves or rejects.
  A request must name a (model, SKU) offered in the location and ask for more
  than the current limit; otherwise it is refused at filing with 400
  InvalidQuotaRequest (Lapis's choice of code). Deciding a request twice is
  409 QuotaRequestNotPending. Approval never lowers a limit.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from lapis.catalog import PROVISIONED_SKUS, SKU_NAMES, ModelSpec
from lapis.errors import catalogue as errors
from lapis.management import tenancy
from lapis.services import ADMIN_PRINCIPAL, Services
from lapis.store.quota import APPROVED, PENDING, REJECTED, QuotaRequest, QuotaStore

_PROVISIONED_NAMES = {
    "ProvisionedManaged": "Provisioned Managed Throughput Unit",
    "GlobalProvisionedManaged": "Global Provisioned Managed Throughput Unit",
    "DataZoneProvisionedManaged": "Data Zone Provisioned Managed Throughput Unit",
}
_SKU_BY_LOWER = {s.lower(): s for s in SKU_NAMES}
# One lock table per store (so per running app); services.py holds no quota state.


@dataclass(frozen=True, slots=True)
class Usage:
    """One quota item of a subscription in a location."""

    name: str  # OpenAI.Standard.gpt-4o-mini
    localized: str  # Tokens Per Minute (thousands) - GPT-4o-Mini
    current: int
    limit: int


# -- names -------------------------------------------------------------------

def usage_name(model: str, sku: str) -> str:
    return f"OpenAI.{sku}.{model}"


def display_model(model: str) -> str:
    """gpt-4o-mini -> GPT-4o-Mini, text-embedding-ada-002 -> Text-Embedding-Ada-002."""
    parts = []
    for part in model.split("-"):
        if part.lower() == "gpt":
            parts.append("GPT")
        elif part[:1].isdigit():
            parts.append(part)
        else:
            parts.append(part[:1].upper() + part[1:])
    return "-".join(parts)


def localized_name(model: str, sku: str) -> str:
    """The quota's display name (see the module docstring for the forms)."""
    if sku in PROVISIONED_SKUS:
        return f"{_PROVISIONED_NAMES[sku]} - {display_model(model)}"
    if sku == "Standard":
        return f"Tokens Per Minute (thousands) - {display_model(model)}"
    return f"Tokens Per Minute (thousands) - {model} - {sku}"


def _location(value: str) -> str:
    return value.replace(" ", "").lower()


# -- limits, usage and the check ----------------------------------------------

def quota_store(services: Services) -> QuotaStore:
    return QuotaStore(services.store.db)


def capacity_lock(services: Services, sub_id: str, location: str) -> asyncio.Lock:
    """The lock to hold around check_capacity and the deployment write."""
    return services.locks.setdefault(("quota", sub_id.lower(), _location(location)), asyncio.Lock())


async def limit_for(services: Services, sub_id: str, location: str, model: str, sku: str) -> int:
    """The override if one is set, else the catalogue's default (0 if not offered)."""
    override = await quota_store(services).limit_override(sub_id, _location(location), usage_name(model, sku))
    if override is not None:
        return override
    return services.catalogue.default_quota(model, sku, _location(location)) or 0


async def check_capacity(services: Services, sub_id: str, location: str, model: str, sku: str,
                         requested_new_capacity: int, current_capacity_of_this_deployment: int) -> None:
    """Raise InsufficientQuota unless the quota has room for the increase.

    The increase is the new capacity minus what this deployment already holds
    of the same quota (0 for a new deployment, or one changing model or SKU).
    Scaling down, or keeping the capacity, is always allowed."""
    delta = requested_new_capacity - current_capacity_of_this_deployment
    if delta <= 0:
        return
    usage = await quota_store(services).used_capacity(sub_id, _location(location), model, sku)
    limit = await limit_for(services, sub_id, location, model, sku)
    available = max(0, limit - usage)
    if delta > available:
        raise errors.insufficient_quota(delta, localized_name(model, sku), available, usage, limit)


async def location_usages(services: Services, sub_id: str, location: str) -> list[Usage]:
    """One item per (model, SKU) the catalogue offers in the location, in catalogue
    order (none for a location Lapis does not know, as for the location models)."""
    await tenancy.require_subscription(services, sub_id)
    loc = _location(location)
    store = quota_store(services)
    used = await store.usage_in_location(sub_id, loc)
    overrides = await store.limit_overrides(sub_id, loc)
    items = []
    for model in services.catalogue.models:
        for sku in SKU_NAMES:
            default = model.skus.get(sku, {}).get(loc)
            if default is None:
                continue
            name = usage_name(model.name, sku)
            items.append(Usage(name, localized_name(model.name, sku), used.get((model.name.lower(), sku.lower()), 0),
                               overrides.get(name, default)))
    return items


# -- quota increase requests ----------------------------------------------------

def _positive_int(value: Any) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise errors.invalid_quota_request(f"The limit '{value}' is invalid: give a whole number.") from None
    if number < 1:
        raise errors.invalid_quota_request(f"The limit '{value}' is invalid: it must be at least 1.")
    return number


def _offer(services: Services, location: str, model_name: str, sku_name: str) -> tuple[ModelSpec, str]:
    if services.catalogue.region_display(location) is None:
        raise errors.invalid_quota_request(f"The location '{location}' is not available.")
    model = services.catalogue.model(model_name)
    sku = _SKU_BY_LOWER.get(sku_name.lower())
    if model is None or sku is None or location not in model.skus.get(sku, {}):
        raise errors.invalid_quota_request(
            f"There is no quota for model '{model_name}' with SKU '{sku_name}' in location '{location}': "
            "the model is not offered there with that SKU.")
    return model, sku


async def file_request(services: Services, sub_id: str, location: str, body: dict[str, Any]) -> QuotaRequest:
    """File a request to raise one quota's limit; it waits for an admin."""
    await tenancy.require_subscription(services, sub_id)
    loc = _location(location)
    if not body.get("model") or body.get("limit") is None:
        raise errors.invalid_quota_request("The request needs 'model', 'sku' and 'limit'.")
    model, sku = _offer(services, loc, str(body["model"]), str(body.get("sku") or "Standard"))
    requested = _positive_int(body["limit"])
    current = await limit_for(services, sub_id, loc, model.name, sku)
    if requested <= current:
        raise errors.invalid_quota_request(
            f"The requested limit {requested} for quota {localized_name(model.name, sku)} is not above the current "
            f"limit {current}. A quota increase request must ask for more than the current limit.")
    req = QuotaRequest(id=str(uuid.uuid4()), subscription_id=sub_id.lower(), location=loc,
                       usage_name=usage_name(model.name, sku), model=model.name, sku=sku, requested_limit=requested,
                       previous_limit=current, state=PENDING, created_at=tenancy.now())
    await quota_store(services).add_request(req)
    return req


def request_path(req_id: str, sub_id: str | None = None) -> str:
    """A request's resource id (or, without a subscription, its admin path)."""
    if sub_id is None:
        return f"/lapis/admin/quotaRequests/{req_id}"
    return f"/subscriptions/{sub_id}/providers/Microsoft.CognitiveServices/quotaRequests/{req_id}"


async def list_requests(services: Services, sub_id: str | None = None) -> list[QuotaRequest]:
    """A subscription's requests, or every request (admin) when sub_id is None."""
    if sub_id is not None:
        await tenancy.require_subscription(services, sub_id)
    return await quota_store(services).requests(sub_id)


async def require_request(services: Services, req_id: str, sub_id: str | None = None) -> QuotaRequest:
    """The request; 404 NotFound if absent or (with sub_id) another subscription's."""
    if sub_id is not None:
        await tenancy.require_subscription(services, sub_id)
    req = await quota_store(services).request(req_id)
    if req is None or (sub_id is not None and req.subscription_id != sub_id.lower()):
        raise errors.arm_resource_missing(request_path(req_id, sub_id))
    return req


async def approve(services: Services, req_id: str) -> QuotaRequest:
    """Approve: the limit becomes the requested one (never lowered), recorded with the decision."""
    req = await require_request(services, req_id)
    if req.state != PENDING:
        raise errors.quota_request_not_pending(req.id, req.state)
    current = await limit_for(services, req.subscription_id, req.location, req.model, req.sku)
    decided = await quota_store(services).decide(req.id, APPROVED, tenancy.now(), ADMIN_PRINCIPAL,
                                                 new_limit=max(current, req.requested_limit))
    return decided or await _lost_race(services, req.id)


async def reject(services: Services, req_id: str, reason: Any) -> QuotaRequest:
    """Reject with a reason (required: the requester reads it)."""
    req = await require_request(services, req_id)
    if not isinstance(reason, str) or not reason.strip():
        raise errors.arm_bad_request("The 'reason' property is required to reject a quota request.")
    if req.state != PENDING:
        raise errors.quota_request_not_pending(req.id, req.state)
    decided = await quota_store(services).decide(req.id, REJECTED, tenancy.now(), ADMIN_PRINCIPAL,
                                                 reason=reason.strip())
    return decided or await _lost_race(services, req.id)


async def _lost_race(services: Services, req_id: str) -> QuotaRequest:
    """Another admin decided between our read and our write."""
    req = await require_request(services, req_id)
    raise errors.quota_request_not_pending(req.id, req.state)
