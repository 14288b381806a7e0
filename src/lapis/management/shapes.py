"""ARM JSON for each stored record (§6 of the wire reference). No I/O.

Key order follows Azure's captures where they show one; values that Azure
returns as strings (capabilities, for instance) are strings here too.
"""

from __future__ import annotations

from typing import Any

from lapis.catalog import Catalogue, ModelSpec, VersionSpec
from lapis.ratelimit.policy import limits_for
from lapis.store.records import Account, Deployment, ResourceGroup, Subscription

NAMESPACE = "Microsoft.CognitiveServices"
ACCOUNT_TYPE = f"{NAMESPACE}/accounts"
DEPLOYMENT_TYPE = f"{NAMESPACE}/accounts/deployments"
ADMIN = "admin@lapis.local"


def group_id(sub: str, group: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}"


def account_id(account: Account) -> str:
    return f"{group_id(account.subscription_id, account.group)}/providers/{ACCOUNT_TYPE}/{account.name}"


def system_data(created: str, modified: str) -> dict[str, Any]:
    return {"createdAt": created, "createdBy": ADMIN, "createdByType": "User",
            "lastModifiedAt": modified, "lastModifiedBy": ADMIN, "lastModifiedByType": "User"}


def endpoint_for(account: Account, base_url: str) -> str:
    """The account's data-plane URL on this Lapis server (with Azure's trailing slash).

    Azure's is https://{subdomain}.openai.azure.com/; that name only resolves
    here if the user maps it, so Lapis hands out a path on its own address
    that every client accepts unmodified. Without a subdomain Azure gives a
    regional endpoint that finds the resource by key; Lapis does the same."""
    if account.subdomain:
        return f"{base_url}/accounts/{account.subdomain.lower()}/"
    return f"{base_url}/regions/{account.location}/"


def account(acct: Account, base_url: str, connections: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    props = dict(acct.properties)
    endpoint = endpoint_for(acct, base_url)
    identity = acct.doc.get("identity")
    properties: dict[str, Any] = {
        "allowedFqdnList": props.get("allowedFqdnList"),
        "apiProperties": props.get("apiProperties"),
        "callRateLimit": {"count": None, "renewalPeriod": None, "rules": [
            {"key": "openai", "count": 30.0, "renewalPeriod": 1.0,
             "matchPatterns": [{"method": "*", "path": "openai/*"}]},
            {"key": "default", "count": 30.0, "renewalPeriod": 1.0,
             "matchPatterns": [{"method": "*", "path": "*"}]},
        ]},
        "capabilities": [
            {"name": "VirtualNetworks", "value": None},
            {"name": "CustomerManagedKey", "value": None},
            {"name": "MaxFineTuneCount", "value": "500"},
            {"name": "MaxRunningFineTuneCount", "value": "3"},
            {"name": "MaxUserFileCount", "value": "100"},
            {"name": "MaxTrainingFileSize", "value": "512000000"},
        ],
        "customSubDomainName": props.get("customSubDomainName"),
        "dateCreated": acct.created_at,
        "disableLocalAuth": props.get("disableLocalAuth"),
        "encryption": props.get("encryption"),
        "endpoint": endpoint,
        "endpoints": {
            "OpenAI Language Model Instance API": endpoint,
            "OpenAI Dall-E API": endpoint,
            "OpenAI Whisper API": endpoint,
            "Token Service API": endpoint,
        },
        "internalId": acct.id,
        "isMigrated": False,
        "networkAcls": props.get("networkAcls"),
        "privateEndpointConnections": connections or [],  # lapis.network.shapes.connection
        "provisioningState": "Succeeded",
        "publicNetworkAccess": props.get("publicNetworkAccess") or "Enabled",
        "restrictOutboundNetworkAccess": props.get("restrictOutboundNetworkAccess"),
        "userOwnedStorage": props.get("userOwnedStorage"),
    }
    return {
        "etag": acct.etag,
        "id": account_id(acct),
        "identity": identity,
        "kind": acct.kind,
        "location": acct.location,
        "name": acct.name,
        "properties": properties,
        "sku": {"name": acct.sku_name},
        "systemData": system_data(acct.created_at, acct.updated_at),
        "tags": acct.doc.get("tags"),
        "type": ACCOUNT_TYPE,
    }


def rate_limits(model: ModelSpec, sku: str, capacity: int) -> list[dict[str, Any]]:
    """ARM's view of a deployment's limits (§6.4): the same Limits the data
    plane enforces (lapis.ratelimit.policy)."""
    limits = limits_for(model, sku, capacity)
    return [
        {"count": float(limits.requests), "dynamicThrottlingEnabled": None, "key": "request", "matchPatterns": None,
         "minCount": None, "renewalPeriod": float(limits.request_window_s)},
        {"count": float(limits.tokens), "dynamicThrottlingEnabled": None, "key": "token", "matchPatterns": None,
         "minCount": None, "renewalPeriod": float(limits.token_window_s)},
    ]


def deployment(dep: Deployment, acct: Account, catalogue: Catalogue) -> dict[str, Any]:
    model = catalogue.model(dep.model_name)
    capabilities = dict(model.capabilities) if model else {}
    properties = {
        "callRateLimit": None,
        "capabilities": capabilities,
        "currentCapacity": dep.capacity,
        "dynamicThrottlingEnabled": False,
        "model": {"callRateLimit": None, "format": dep.model_format, "name": dep.model_name, "source": None,
                  "version": dep.model_version},
        "provisioningState": "Succeeded",
        "raiPolicyName": dep.doc.get("raiPolicyName", "Microsoft.DefaultV2"),
        "rateLimits": rate_limits(model, dep.sku_name, dep.capacity) if model else [],
        "scaleSettings": None,
        "versionUpgradeOption": dep.doc.get("versionUpgradeOption", "OnceNewDefaultVersionAvailable"),
    }
    if dep.doc.get("spilloverDeploymentName"):
        properties["spilloverDeploymentName"] = dep.doc["spilloverDeploymentName"]
    return {
        "etag": dep.etag,
        "id": f"{account_id(acct)}/deployments/{dep.name}",
        "name": dep.name,
        "properties": properties,
        "sku": {"capacity": dep.capacity, "name": dep.sku_name},
        "systemData": system_data(dep.created_at, dep.updated_at),
        "type": DEPLOYMENT_TYPE,
    }


def resource_group(group: ResourceGroup) -> dict[str, Any]:
    return {
        "id": group_id(group.subscription_id, group.name),
        "name": group.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": group.location,
        "tags": group.tags or None,
        "properties": {"provisioningState": "Succeeded"},
    }


def subscription(sub: Subscription) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{sub.id}",
        "authorizationSource": "RoleBased",
        "subscriptionId": sub.id,
        "tenantId": sub.tenant_id,
        "displayName": sub.display_name,
        "state": sub.state,
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                 "spendingLimit": "Off"},
    }


def provider(sub_id: str, state: str, catalogue: Catalogue) -> dict[str, Any]:
    locations = sorted(catalogue.regions.values())
    return {
        "id": f"/subscriptions/{sub_id}/providers/{NAMESPACE}",
        "namespace": NAMESPACE,
        "registrationPolicy": "RegistrationRequired",
        "registrationState": state,
        "resourceTypes": [
            {"resourceType": "accounts", "locations": locations, "apiVersions": ["2025-06-01", "2024-10-01",
                                                                                 "2023-05-01"],
             "capabilities": "CrossResourceGroupResourceMove, CrossSubscriptionResourceMove, SystemAssignedResourceIdentity"},
            {"resourceType": "accounts/deployments", "locations": locations, "apiVersions": ["2025-06-01",
                                                                                             "2024-10-01"]},
            {"resourceType": "locations/models", "locations": locations, "apiVersions": ["2025-06-01"]},
        ],
    }


def _model_skus(model: ModelSpec, location: str) -> list[dict[str, Any]]:
    skus = []
    for sku_name, regions in model.skus.items():
        if location not in regions:
            continue
        default = regions[location]
        skus.append({
            "name": sku_name,
            "usageName": f"OpenAI.{sku_name}.{model.name}",
            "capacity": {"minimum": 1, "maximum": default, "step": 1, "default": min(default, 10)},
            "rateLimits": [{"key": r["key"], "renewalPeriod": r["renewalPeriod"], "count": r["count"]}
                           for r in rate_limits(model, sku_name, 1)],
        })
    return skus


def catalogue_model(model: ModelSpec, version: VersionSpec, location: str) -> dict[str, Any]:
    """The model object shared by the location and account model lists."""
    capabilities = dict(model.capabilities)
    return {
        "format": model.format,
        "name": model.name,
        "version": version.version,
        "capabilities": capabilities,
        "deprecation": version.deprecation or {},
        "isDefaultVersion": version.version == model.default_version,
        "lifecycleStatus": version.lifecycle_status,
        "maxCapacity": max((r.get(location, 0) for r in model.skus.values()), default=0),
        "skus": _model_skus(model, location),
        "systemData": system_data("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
    }


def location_models(catalogue: Catalogue, location: str) -> dict[str, Any]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for model, version, _sku in catalogue.offers(location):
        key = (model.name, version.version)
        if key not in seen:
            seen[key] = {"kind": "OpenAI", "skuName": "S0", "model": catalogue_model(model, version, location)}
    return {"value": list(seen.values())}


def account_models(catalogue: Catalogue, location: str) -> dict[str, Any]:
    """Flat AccountModel items, unlike the location list (real-clients.md §5)."""
    return {"value": [item["model"] for item in location_models(catalogue, location)["value"]]}
