"""`lapis consumption budget create|list|show|update|delete`: budgets, after `az consumption budget`.

    lapis consumption budget create --budget-name B --amount 100 [--category cost]
        [--time-grain monthly|quarterly|annually] [--start-date 2026-07-01] [--end-date 2027-06-30]
        [-g GROUP [--resource ACCOUNT]] [--notification 80%:webhook=URL ...] [--hard-cap]
    lapis consumption budget list [-g GROUP [--resource ACCOUNT]]
    lapis consumption budget show|delete --budget-name B [-g GROUP [--resource ACCOUNT]]
    lapis consumption budget update --budget-name B [--amount] [--time-grain] [--end-date]
        [--notification ...] [--hard-cap | --no-hard-cap]

az's flags, with Lapis's defaults where az requires them: category cost,
time grain monthly, the start date the first of this month (UTC), the end
date ten years on (the server's default). Lapis's own:

* `--resource ACCOUNT` (with -g) or a full account id: a budget on one account.
* `--notification THRESHOLD%[:key=value,...]`, repeatable: keys `webhook`
  (the Lapis-only webhookUrl), `email`, `group`, `role` (repeatable),
  `operator` (gt | gte, or Azure's names), `type` (actual | forecasted) and
  `name` (default: Actual_GreaterThan_80_Percent, as Azure's examples name them).
  On update, the notifications given replace the budget's.
* `--hard-cap`: over the amount, the scope's data plane answers 429 until the
  next period.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, Any, Optional

import typer

from lapis.cli.client import CliError, path
from lapis.cli.common import Output, Query, Subscription, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat, field

BUDGET_API = "2023-05-01"
GRAINS = {"monthly": "Monthly", "quarterly": "Quarterly", "annually": "Annually"}
OPERATORS = {"gt": "GreaterThan", "greaterthan": "GreaterThan", "gte": "GreaterThanOrEqualTo",
             "greaterthanorequalto": "GreaterThanOrEqualTo"}
TYPES = {"actual": "Actual", "forecasted": "Forecasted"}
LISTS = {"email": "contactEmails", "group": "contactGroups", "role": "contactRoles"}
COLUMNS = [("Name", field("name")), ("Amount", field("properties.amount")),
           ("TimeGrain", field("properties.timeGrain")), ("CurrentSpend", field("properties.currentSpend.amount")),
           ("Unit", field("properties.currentSpend.unit")), ("HardCap", field("properties.hardCap"))]
_OPTION = re.compile(r",(?=\s*(?:webhook|email|group|role|operator|type|name)=)", re.IGNORECASE)

budget_app = new_typer("Manage budgets: spend per period, notifications, and Lapis's hard cap.")

Name = Annotated[str, typer.Option("--budget-name", "--name", "-n", help="Name of the budget.")]
Group = Annotated[Optional[str], typer.Option("--resource-group", "-g", help="A resource group: the budget's scope.")]
Resource = Annotated[Optional[str], typer.Option(
    "--resource", "--account-name", help="An account (with -g) or its full id: the budget's scope (Lapis's own).")]
Notifications = Annotated[Optional[list[str]], typer.Option(
    "--notification", help="THRESHOLD%[:webhook=URL,email=ADDR,operator=gt|gte,type=actual|forecasted,name=N]; "
                           "repeatable.")]


def scope_path(sub: str, group: str | None, resource: str | None) -> list[str]:
    """The budget scope's path segments."""
    if resource and resource.startswith("/"):
        parts = [p for p in resource.split("/") if p]
        if len(parts) != 8 or parts[0].lower() != "subscriptions" or parts[6].lower() != "accounts":
            raise CliError(f"--resource '{resource}' is not an account id "
                           "(/subscriptions/…/providers/Microsoft.CognitiveServices/accounts/NAME).")
        return parts
    if resource:
        if not group:
            raise CliError("--resource needs --resource-group (or give the account's full id).")
        return ["subscriptions", sub, "resourceGroups", group, "providers", "Microsoft.CognitiveServices",
                "accounts", resource]
    return ["subscriptions", sub] + (["resourceGroups", group] if group else [])


def _choice(value: str, choices: dict[str, str], flag: str) -> str:
    found = choices.get(value.strip().lower())
    if found is None:
        raise CliError(f"{flag} '{value}' is not one of {', '.join(sorted(set(choices)))}.")
    return found


def parse_notification(spec: str) -> tuple[str, dict[str, Any]]:
    """`80%:webhook=URL,email=a@b` as (name, notification body)."""
    head, _, rest = spec.partition(":")
    try:
        threshold = float(head.strip().rstrip("%"))
    except ValueError:
        raise CliError(f"--notification '{spec}': start with the threshold in percent, e.g. 80%.") from None
    note: dict[str, Any] = {"enabled": True, "operator": "GreaterThan", "threshold": threshold,
                            "thresholdType": "Actual", "contactEmails": []}
    name = None
    for option in (_OPTION.split(rest) if rest.strip() else []):
        key, sep, value = option.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise CliError(f"--notification '{spec}': '{option}' is not key=value.")
        if key == "webhook":
            note["webhookUrl"] = value
        elif key in LISTS:
            note.setdefault(LISTS[key], []).append(value)
        elif key == "operator":
            note["operator"] = _choice(value, OPERATORS, "operator")
        elif key == "type":
            note["thresholdType"] = _choice(value, TYPES, "type")
        elif key == "name":
            name = value
        else:
            raise CliError(f"--notification '{spec}': unknown key '{key}' (webhook, email, group, role, operator, "
                           "type, name).")
    return name or f"{note['thresholdType']}_{note['operator']}_{threshold:g}_Percent", note


def _day(value: str, flag: str) -> str:
    try:
        return f"{date.fromisoformat(value.strip()[:10]).isoformat()}T00:00:00Z"
    except ValueError:
        raise CliError(f"{flag} '{value}' is not a date (YYYY-MM-DD).") from None


def _url(sub: str | None, group: str | None, resource: str | None, *name: str) -> tuple[Any, str]:
    api = client()
    segments = scope_path(subscription_id(api, sub), group, resource)
    return api, path(*segments, "providers", "Microsoft.Consumption", "budgets", *name)


@budget_app.command("create")
def create(budget_name: Name, amount: Annotated[float, typer.Option("--amount", help="Amount per period, USD.")],
           category: Annotated[str, typer.Option("--category", help="cost (Lapis tracks cost only).")] = "cost",
           time_grain: Annotated[str, typer.Option("--time-grain", help="monthly, quarterly or annually.")]
           = "monthly",
           start_date: Annotated[Optional[str], typer.Option("--start-date", "-s", help="First day (YYYY-MM-DD), "
                                                                                         "a first of the month; "
                                                                                         "default this month's.")]
           = None,
           end_date: Annotated[Optional[str], typer.Option("--end-date", "-e", help="End date (YYYY-MM-DD); "
                                                                                     "default ten years on.")] = None,
           resource_group: Group = None, resource: Resource = None, notification: Notifications = None,
           hard_cap: Annotated[bool, typer.Option("--hard-cap", help="Refuse the scope's data plane (429) "
                                                                     "while the budget is spent.")] = False,
           subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create (or replace) a budget."""
    start = _day(start_date, "--start-date") if start_date else \
        datetime.now(timezone.utc).strftime("%Y-%m-01T00:00:00Z")
    period = {"startDate": start, **({"endDate": _day(end_date, "--end-date")} if end_date else {})}
    properties = {"category": category[:1].upper() + category[1:].lower(), "amount": amount,
                  "timeGrain": _choice(time_grain, GRAINS, "--time-grain"), "timePeriod": period,
                  "notifications": dict(parse_notification(n) for n in notification or []), "hardCap": hard_cap}
    api, url = _url(subscription, resource_group, resource, budget_name)
    show(api.request("PUT", url, {"properties": properties}, api_version=BUDGET_API), output, query)


@budget_app.command("update")
def update(budget_name: Name, amount: Annotated[Optional[float], typer.Option("--amount")] = None,
           time_grain: Annotated[Optional[str], typer.Option("--time-grain")] = None,
           end_date: Annotated[Optional[str], typer.Option("--end-date", "-e")] = None,
           notification: Notifications = None,
           hard_cap: Annotated[Optional[bool], typer.Option("--hard-cap/--no-hard-cap")] = None,
           resource_group: Group = None, resource: Resource = None, subscription: Subscription = None,
           output: Output = OutputFormat.json, query: Query = None) -> None:
    """Change a budget (read, change, write back with its eTag)."""
    api, url = _url(subscription, resource_group, resource, budget_name)
    current = api.get(url, api_version=BUDGET_API) or {}
    properties = {k: v for k, v in (current.get("properties") or {}).items()
                  if k not in ("currentSpend", "forecastSpend")}
    if amount is not None:
        properties["amount"] = amount
    if time_grain is not None:
        properties["timeGrain"] = _choice(time_grain, GRAINS, "--time-grain")
    if end_date is not None:
        properties["timePeriod"] = {**properties.get("timePeriod", {}), "endDate": _day(end_date, "--end-date")}
    if notification is not None:
        properties["notifications"] = dict(parse_notification(n) for n in notification)
    if hard_cap is not None:
        properties["hardCap"] = hard_cap
    body = {"eTag": current.get("eTag"), "properties": properties}
    show(api.request("PUT", url, body, api_version=BUDGET_API), output, query)


@budget_app.command("list")
def list_(resource_group: Group = None, resource: Resource = None, subscription: Subscription = None,
          output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the budgets of a subscription, resource group or account."""
    api, url = _url(subscription, resource_group, resource)
    show(api.value(url, api_version=BUDGET_API), output, query, COLUMNS)


@budget_app.command("show")
def show_(budget_name: Name, resource_group: Group = None, resource: Resource = None,
          subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Show a budget, with its current spend."""
    api, url = _url(subscription, resource_group, resource, budget_name)
    show(api.get(url, api_version=BUDGET_API), output, query, COLUMNS)


@budget_app.command("delete")
def delete(budget_name: Name, resource_group: Group = None, resource: Resource = None,
           subscription: Subscription = None) -> None:
    """Delete a budget."""
    api, url = _url(subscription, resource_group, resource, budget_name)
    api.request("DELETE", url, api_version=BUDGET_API)
