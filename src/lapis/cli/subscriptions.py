"""`lapis account list|show`: the subscriptions, shaped as `az account list|show` prints them."""

from __future__ import annotations

from typing import Any

from lapis.cli.client import SUBSCRIPTIONS_API, path
from lapis.cli.common import Output, Query, Subscription, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat, field

account_app = new_typer("Manage subscriptions (as az account).")
COLUMNS = [("Name", field("name")), ("CloudName", field("cloudName")), ("SubscriptionId", field("id")),
           ("TenantId", field("tenantId")), ("State", field("state")), ("IsDefault", field("isDefault"))]


def az_shape(sub: dict[str, Any], default: str) -> dict[str, Any]:
    """ARM's subscription as an az profile entry: id is the bare GUID, name the display name."""
    return {
        "cloudName": "Lapis",
        "homeTenantId": sub.get("tenantId"),
        "id": sub.get("subscriptionId"),
        "isDefault": str(sub.get("subscriptionId", "")).lower() == default.lower(),
        "managedByTenants": [],
        "name": sub.get("displayName"),
        "state": sub.get("state"),
        "tenantId": sub.get("tenantId"),
        "user": {"name": "admin@lapis.local", "type": "user"},
    }


@account_app.command("list")
def account_list(subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the subscriptions; isDefault marks the one commands use without --subscription."""
    api = client()
    default = subscription_id(api, subscription)
    subs = api.value("/subscriptions", SUBSCRIPTIONS_API)
    show([az_shape(s, default) for s in subs], output, query, COLUMNS)


@account_app.command("show")
def account_show(subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Show the local subscription, or the one named by --subscription."""
    api = client()
    sub = subscription_id(api, subscription)
    show(az_shape(api.get(path("subscriptions", sub), SUBSCRIPTIONS_API), sub), output, query, COLUMNS)
