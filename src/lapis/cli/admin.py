"""`lapis admin ...`: Lapis's own admin API (not part of az), under /lapis/admin.

Azure gates kind OpenAI behind an access request; in Lapis the admin
approves (or revokes) a subscription instead, and creates subscriptions.
The admin also decides on quota increase requests (`admin quota-request`,
in quota.py).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from lapis.cli.client import path
from lapis.cli.common import Output, Query, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat
from lapis.cli.quota import admin_request_app

admin_app = new_typer("Lapis administration: subscriptions and their approval for Azure OpenAI.")
subscription_app = new_typer("Create subscriptions.")
admin_app.add_typer(subscription_app, name="subscription")
admin_app.add_typer(admin_request_app, name="quota-request")

Target = Annotated[str, typer.Option("--subscription", help="Name or ID of the subscription.")]


def _approval(subscription: str, action: str, output: OutputFormat, query: str | None) -> None:
    api = client()
    sub = subscription_id(api, subscription)
    show(api.request("POST", path("lapis", "admin", "subscriptions", sub, action), api_version=None), output, query)


@admin_app.command("approve-subscription")
def approve_subscription(subscription: Target, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Approve a subscription for kind OpenAI (Azure's access request, granted)."""
    _approval(subscription, "approve", output, query)


@admin_app.command("revoke-subscription")
def revoke_subscription(subscription: Target, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Withdraw a subscription's approval for kind OpenAI (existing accounts stay)."""
    _approval(subscription, "revoke", output, query)


@subscription_app.command("create")
def subscription_create(
        name: Annotated[str, typer.Option("--name", "-n", help="Display name of the subscription.")],
        subscription_id_: Annotated[Optional[str], typer.Option(
            "--subscription-id", help="The id to give it (a GUID). Default: a new random one.")] = None,
        approved: Annotated[bool, typer.Option("--approved", help="Approve it for kind OpenAI at once.")] = False,
        output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create a subscription (unregistered, and unapproved unless --approved)."""
    body: dict = {"displayName": name, "approved": approved}
    if subscription_id_:
        body["subscriptionId"] = subscription_id_
    show(client().request("POST", "/lapis/admin/subscriptions", body, api_version=None), output, query)


@admin_app.command("stats")
def stats(output: Output = OutputFormat.json, query: Query = None) -> None:
    """Backend counters (tokens, streams)."""
    show(client().get("/lapis/admin/stats", api_version=None), output, query)
