"""The demo resource that `make run` starts with, and the exports it prints.

Seeded through the same services the ARM routes use, so the demo account is
an ordinary account: list it, rotate its keys, delete it.
"""

from __future__ import annotations

from lapis.dataplane.apiversions import LATEST_GA
from lapis.management import accounts, deployments, tenancy
from lapis.management.shapes import endpoint_for
from lapis.services import DEFAULT_SUBSCRIPTION, Services

GROUP = "lapis-demo"
ACCOUNT = "lapis-demo"
LOCATION = "eastus"
CHAT_DEPLOYMENT = "gpt-4o-mini"
EMBEDDINGS_DEPLOYMENT = "text-embedding-3-small"


async def seed(services: Services) -> None:
    """Create (or keep) the demo group, account and two deployments."""
    sub = DEFAULT_SUBSCRIPTION
    await tenancy.register(services, sub, tenancy.NAMESPACE)
    if await services.store.group(sub, GROUP) is None:
        await tenancy.put_group(services, sub, GROUP, LOCATION, {})
    if await services.store.account(sub, GROUP, ACCOUNT) is None:
        await accounts.put(services, sub, GROUP, ACCOUNT, {
            "kind": "OpenAI", "sku": {"name": "S0"}, "location": LOCATION,
            "properties": {"customSubDomainName": ACCOUNT, "publicNetworkAccess": "Enabled"}})
    account = await accounts.require(services, sub, GROUP, ACCOUNT)
    for name, model in ((CHAT_DEPLOYMENT, "gpt-4o-mini"), (EMBEDDINGS_DEPLOYMENT, "text-embedding-3-small")):
        if await services.store.deployment(account.id, name) is None:
            await deployments.put(services, sub, GROUP, ACCOUNT, name, {
                "sku": {"name": "Standard", "capacity": 50},
                "properties": {"model": {"format": "OpenAI", "name": model}}})


async def exports(services: Services) -> str:
    account = await accounts.require(services, DEFAULT_SUBSCRIPTION, GROUP, ACCOUNT)
    endpoint = endpoint_for(account, services.settings.base_url).rstrip("/")
    return "\n".join([
        f"export AZURE_OPENAI_ENDPOINT={endpoint}",
        f"export AZURE_OPENAI_DEPLOYMENT={CHAT_DEPLOYMENT}",
        f"export AZURE_OPENAI_KEY={account.key1}",
        f"export AZURE_OPENAI_API_VERSION={LATEST_GA}",
    ])
