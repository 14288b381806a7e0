"""Subscriptions, resource provider registration and resource groups.

The walkthrough's first steps: `provider register`, `group create`, and the
admin's approval of a subscription for kind OpenAI (Azure's access gate).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from lapis.errors import catalogue as errors
from lapis.services import DEFAULT_SUBSCRIPTION, DEFAULT_SUBSCRIPTION_NAME, DEFAULT_TENANT, Services
from lapis.store.records import ResourceGroup, Subscription

NAMESPACE = "Microsoft.CognitiveServices"
_GROUP_NAME = re.compile(r"^[-\w._()]{1,90}$")


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


async def ensure_default_subscription(services: Services) -> None:
    """The local subscription exists and is approved for OpenAI from the first start."""
    await services.store.add_subscription(Subscription(
        id=DEFAULT_SUBSCRIPTION, display_name=DEFAULT_SUBSCRIPTION_NAME, tenant_id=DEFAULT_TENANT,
        openai_approved=True, created_at=now(),
    ))


async def create_subscription(services: Services, display_name: str, sub_id: str | None = None,
                              approved: bool = False) -> Subscription:
    if sub_id is not None:
        try:
            sub_id = str(uuid.UUID(str(sub_id)))
        except ValueError:
            raise errors.arm_bad_request(f"The subscription id '{sub_id}' is not a valid GUID.",
                                         "InvalidSubscriptionId") from None
    sub = Subscription(id=(sub_id or str(uuid.uuid4())).lower(), display_name=display_name,
                       tenant_id=DEFAULT_TENANT, openai_approved=approved, created_at=now())
    if not await services.store.add_subscription(sub):
        raise errors.arm(409, "SubscriptionAlreadyExists", f"The subscription '{sub.id}' already exists.")
    return sub


async def require_subscription(services: Services, sub_id: str) -> Subscription:
    sub = await services.store.subscription(sub_id)
    if sub is None:
        raise errors.subscription_not_found(sub_id)
    return sub


async def require_registered(services: Services, sub_id: str) -> None:
    if await services.store.registration(sub_id, NAMESPACE) != "Registered":
        raise errors.missing_subscription_registration(NAMESPACE)


def require_namespace(namespace: str) -> None:
    """Lapis serves one resource provider."""
    if namespace.lower() != NAMESPACE.lower():
        raise errors.arm(404, "NamespaceNotFound", f"The resource namespace '{namespace}' is invalid.")


async def register(services: Services, sub_id: str, namespace: str) -> str:
    """Registration is instant here: NotRegistered -> Registered (Azure passes
    through Registering; a poller that waits for Registered sees it at once)."""
    await require_subscription(services, sub_id)
    require_namespace(namespace)
    await services.store.set_registration(sub_id, NAMESPACE, "Registered")
    return "Registered"


async def unregister(services: Services, sub_id: str, namespace: str) -> str:
    await require_subscription(services, sub_id)
    require_namespace(namespace)
    await services.store.set_registration(sub_id, NAMESPACE, "NotRegistered")
    return "NotRegistered"


async def put_group(services: Services, sub_id: str, name: str, location: str | None,
                    tags: dict[str, str]) -> tuple[ResourceGroup, bool]:
    await require_subscription(services, sub_id)
    if not _GROUP_NAME.match(name) or name.endswith("."):
        raise errors.arm(400, "InvalidResourceGroup",
                         f"The provided resource group name '{name}' has these invalid characters: "
                         "'The name can only include alphanumeric characters, periods, underscores, hyphens "
                         "and parenthesis and cannot end in a period'.")
    existing = await services.store.group(sub_id, name)
    if existing is None:
        if not location:
            raise errors.arm(400, "LocationRequired", "The location property is required for this definition.")
        location = location.replace(" ", "").lower()
        if services.catalogue.region_display(location) is None:
            raise errors.arm(400, "LocationNotAvailableForResourceGroup",
                             f"The provided location '{location}' is not available for resource group. List of "
                             f"available regions is '{','.join(sorted(services.catalogue.regions))}'.")
    group = ResourceGroup(sub_id, existing.name if existing else name,
                          existing.location if existing else location, tags, now())
    created = await services.store.put_group(group)
    return group, created


async def require_group(services: Services, sub_id: str, name: str) -> ResourceGroup:
    await require_subscription(services, sub_id)
    group = await services.store.group(sub_id, name)
    if group is None:
        raise errors.resource_group_not_found(name)
    return group


async def delete_group(services: Services, sub_id: str, name: str) -> bool:
    group = await require_group(services, sub_id, name)
    ids = [a.id for a in await services.store.accounts(sub_id, group.name)]
    deleted = await services.store.delete_group(sub_id, name)
    for account_id in ids:
        await services.refresh_account(account_id)  # gone here and on every replica
    return deleted
