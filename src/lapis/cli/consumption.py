"""`lapis consumption usage list`: tokens and cost, grouped, from Cost Management's query API.

    lapis consumption usage list [--start-date 2026-07-01] [--end-date 2026-07-31]
        [--group-by deployment|model|tag:<name>|resource-group|resource|meter|sku|caller|none]
        [-g GROUP] [--subscription S] [-o json|table|tsv]

Named after `az consumption usage list` (whose --start-date/--end-date it
takes, and --start/--end too); what it prints is Lapis's own: one row per
group with its input tokens (the cached ones included), cached input tokens,
output tokens, cost and currency. The range defaults to the current month
(az's default billing period) and both ends are inclusive days.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated, Any, Optional

import typer

from lapis.cli.budgets import budget_app
from lapis.cli.client import CliError, path
from lapis.cli.common import Output, Query, Subscription, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat, field

COST_API = "2023-03-01"
GROUPS = {"deployment": ("Dimension", "DeploymentName"), "model": ("Dimension", "ModelName"),
          "resource-group": ("Dimension", "ResourceGroupName"), "resource": ("Dimension", "ResourceId"),
          "meter": ("Dimension", "Meter"), "sku": ("Dimension", "Sku"), "caller": ("Dimension", "Caller")}
AGGREGATION = {"inputTokens": "InputTokens", "cachedInputTokens": "CachedInputTokens",
               "outputTokens": "OutputTokens", "cost": "Cost"}

consumption_app = new_typer("Inspect the usage and cost of your resources.")
usage_app = new_typer("Tokens and cost of the metered requests.")
consumption_app.add_typer(usage_app, name="usage")
consumption_app.add_typer(budget_app, name="budget")  # lapis.cli.budgets


def grouping(value: str) -> list[dict[str, str]]:
    """--group-by as Cost Management groupings."""
    key = value.strip()
    if key.lower() == "none":
        return []
    if key.lower().startswith("tag:") and key[4:]:
        return [{"type": "TagKey", "name": key[4:]}]
    if key.lower() not in GROUPS:
        raise CliError(f"--group-by '{value}' is not one of {', '.join(GROUPS)}, tag:<name>, none.")
    kind, name = GROUPS[key.lower()]
    return [{"type": kind, "name": name}]


def _day(value: str | None, flag: str, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise CliError(f"{flag} '{value}' is not a date (YYYY-MM-DD).") from None


def query_body(start: date, end: date, groups: list[dict[str, str]]) -> dict[str, Any]:
    aggregation = {alias: {"name": name, "function": "Sum"} for alias, name in AGGREGATION.items()}
    return {"type": "Usage", "timeframe": "Custom",
            "timePeriod": {"from": f"{start.isoformat()}T00:00:00Z", "to": f"{end.isoformat()}T23:59:59Z"},
            "dataset": {"granularity": "None", "grouping": groups, "aggregation": aggregation}}


def to_items(properties: dict[str, Any]) -> list[dict[str, Any]]:
    """Cost Management's columns and rows as one object per row, keys in camelCase."""
    names = [c["name"] for c in properties.get("columns") or []]
    keys = {v: k for k, v in AGGREGATION.items()}
    items = []
    for row in properties.get("rows") or []:
        item = {keys.get(n, n[:1].lower() + n[1:]): value for n, value in zip(names, row)}
        items.append(item)
    return items


@usage_app.command("list")
def usage_list(
        start_date: Annotated[Optional[str], typer.Option("--start-date", "--start",
                                                          help="First day (YYYY-MM-DD); default the 1st.")] = None,
        end_date: Annotated[Optional[str], typer.Option("--end-date", "--end",
                                                        help="Last day, inclusive; default today.")] = None,
        group_by: Annotated[str, typer.Option("--group-by", help="deployment, model, tag:<name>, resource-group, "
                                                                 "resource, meter, sku, caller or none.")]
        = "deployment",
        resource_group: Annotated[Optional[str], typer.Option("--resource-group", "-g",
                                                              help="Only this resource group.")] = None,
        subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List tokens and cost per group over a range of days."""
    today = datetime.now(timezone.utc).date()
    start = _day(start_date, "--start-date", today.replace(day=1))
    end = _day(end_date, "--end-date", today)
    if end < start:
        raise CliError("--end-date is before --start-date.")
    groups = grouping(group_by)
    api = client()
    sub = subscription_id(api, subscription)
    scope = ["subscriptions", sub] + (["resourceGroups", resource_group] if resource_group else [])
    answer = api.request("POST", path(*scope, "providers", "Microsoft.CostManagement", "query"),
                         query_body(start, end, groups), api_version=COST_API)
    items = to_items((answer or {}).get("properties") or {})
    group_columns = [(c, field(c[:1].lower() + c[1:])) for g in groups
                     for c in (("TagKey", "TagValue") if g["type"] == "TagKey" else (g["name"],))]
    columns = [*group_columns, ("InputTokens", field("inputTokens")),
               ("CachedInputTokens", field("cachedInputTokens")), ("OutputTokens", field("outputTokens")),
               ("Cost", lambda item: f"{item.get('cost', 0):.6f}"), ("Currency", field("currency"))]
    show(items, output, query, columns)
