"""Quota from the command line.

    lapis cognitiveservices usage list --location eastus     as az: currentValue and limit per quota name
    lapis quota request create|list|show                     Lapis's own: ask for more quota
    lapis admin quota-request list|approve|reject            Lapis's own: decide on the requests

Azure users raise quota in the portal (or through Microsoft.Quota); Lapis
gives the request a command, and its admin the decision.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lapis.cli.client import path
from lapis.cli.common import Location, Output, Query, Subscription, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat, field

NAMESPACE = "Microsoft.CognitiveServices"
usage_app = new_typer("Show the subscription's quota usage in a region.")
quota_app = new_typer("Ask for more quota (Lapis's own commands; Azure uses the portal).")
request_app = new_typer("File and follow quota increase requests.")
quota_app.add_typer(request_app, name="request")
admin_request_app = new_typer("Approve or reject quota increase requests.")

USAGE_COLUMNS = [("Name", field("name.value")), ("CurrentValue", field("currentValue")), ("Limit", field("limit"))]
REQUEST_COLUMNS = [("Name", field("name")), ("Location", field("properties.location")),
                   ("Model", field("properties.model")), ("Sku", field("properties.sku")),
                   ("PreviousLimit", field("properties.previousLimit")),
                   ("RequestedLimit", field("properties.requestedLimit")), ("State", field("properties.state"))]
ADMIN_COLUMNS = [("Subscription", field("properties.subscriptionId")), *REQUEST_COLUMNS,
                 ("Reason", field("properties.reason"))]

RequestId = Annotated[str, typer.Option("--id", help="The quota request's id (its name).")]


def _provider(sub: str, *rest: str) -> str:
    return path("subscriptions", sub, "providers", NAMESPACE, *rest)


@usage_app.command("list")
def usage_list(location: Location, subscription: Subscription = None, output: Output = OutputFormat.json,
               query: Query = None) -> None:
    """List quota usage and limits (thousands of TPM, or PTUs) per model and deployment type."""
    api = client()
    sub = subscription_id(api, subscription)
    show(api.value(_provider(sub, "locations", location, "usages")), output, query, USAGE_COLUMNS)


@request_app.command("create")
def request_create(
        location: Location,
        model: Annotated[str, typer.Option("--model", help="The model, e.g. gpt-4o-mini.")],
        limit: Annotated[int, typer.Option("--limit", help="The limit wanted, in the quota's unit "
                                                            "(thousands of TPM, or PTUs).")],
        sku: Annotated[str, typer.Option("--sku", help="The deployment type, e.g. Standard.")] = "Standard",
        subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Ask for a higher limit on one quota; an admin approves or rejects it."""
    api = client()
    sub = subscription_id(api, subscription)
    body = {"model": model, "sku": sku, "limit": limit}
    show(api.request("POST", _provider(sub, "locations", location, "quotaRequests"), body), output, query,
         REQUEST_COLUMNS)


@request_app.command("list")
def request_list(subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the subscription's quota requests and their outcome."""
    api = client()
    show(api.value(_provider(subscription_id(api, subscription), "quotaRequests")), output, query, REQUEST_COLUMNS)


@request_app.command("show")
def request_show(request_id: RequestId, subscription: Subscription = None, output: Output = OutputFormat.json,
                 query: Query = None) -> None:
    """Show one quota request."""
    api = client()
    show(api.get(_provider(subscription_id(api, subscription), "quotaRequests", request_id)), output, query,
         REQUEST_COLUMNS)


@admin_request_app.command("list")
def admin_request_list(output: Output = OutputFormat.json, query: Query = None) -> None:
    """List every subscription's quota requests."""
    show(client().value("/lapis/admin/quotaRequests", api_version=None), output, query, ADMIN_COLUMNS)


@admin_request_app.command("approve")
def admin_request_approve(request_id: RequestId, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Approve a request: the quota's limit becomes the one requested."""
    show(client().request("POST", path("lapis", "admin", "quotaRequests", request_id, "approve"), api_version=None),
         output, query, ADMIN_COLUMNS)


@admin_request_app.command("reject")
def admin_request_reject(request_id: RequestId,
                         reason: Annotated[str, typer.Option("--reason", help="Why; the requester sees it.")],
                         output: Output = OutputFormat.json, query: Query = None) -> None:
    """Reject a request, saying why."""
    show(client().request("POST", path("lapis", "admin", "quotaRequests", request_id, "reject"),
                          {"reason": reason}, api_version=None), output, query, ADMIN_COLUMNS)
