"""A budget as Microsoft.Consumption/budgets takes it (api-version 2023-05-01), checked.

The body of a PUT, after the spec (Budget.tsp and its examples):

    {"eTag": "\"1d34d016a593709\"",                       optional: concurrency control
     "properties": {
        "category": "Cost",
        "amount": 100.65,                                   > 0, in USD
        "timeGrain": "Monthly" | "Quarterly" | "Annually",
        "timePeriod": {"startDate": "2026-07-01T00:00:00Z",  the first of a month
                       "endDate": "2027-06-30T00:00:00Z"},  optional: 10 years on
        "notifications": {                                  at most 5
            "Actual_GreaterThan_80_Percent": {
                "enabled": true,
                "operator": "GreaterThan" | "GreaterThanOrEqualTo",
                "threshold": 80,                            percent of amount, 0 < t <= 1000
                "thresholdType": "Actual" | "Forecasted",   default Actual
                "contactEmails": [...], "contactGroups": [...], "contactRoles": [...],
                "locale": "en-us",                          optional, echoed
                "webhookUrl": "http://127.0.0.1:9000/hook"  Lapis only (below)
            }},
        "hardCap": false}}                                  Lapis only (below)

Lapis's additions and choices:

* `hardCap: true` (Lapis only): once the period's spend reaches `amount`, the
  data plane of every account in the budget's scope answers 429
  BudgetExceeded (lapis.errors.budgets) until the next period starts.
* `webhookUrl` on a notification (Lapis only): where Lapis POSTs the
  notification (lapis.budgets.notify). Lapis sends no email and has no action
  groups: contactEmails, contactGroups and contactRoles are kept and echoed,
  and a notification needs at least one of them or a webhookUrl.
* Scopes: a subscription, a resource group, and (Lapis only) an account.
* Only category Cost (Usage budgets are retired on Azure), and no `filter`:
  a budget with one is refused rather than evaluated wrongly; scope the
  budget to a resource group or an account instead.
* Names: 1 to 63 letters, digits, '-' and '_'.

Invalid input raises `Invalid(message)`; the management route turns it into
Consumption's 400 (lapis.errors.budgets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

from lapis.budgets.periods import GRAIN_MONTHS, add_months, current_period, iso, ten_years_after

RESOURCE_TYPE = "Microsoft.Consumption/budgets"
CATEGORY = "Cost"
OPERATORS = ("GreaterThan", "GreaterThanOrEqualTo")
THRESHOLD_TYPES = ("Actual", "Forecasted")
MAX_NOTIFICATIONS = 5
EARLIEST_START = datetime(2017, 6, 1, tzinfo=timezone.utc)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


class Invalid(ValueError):
    """A budget body Azure would refuse with 400; the message says why."""


@dataclass(frozen=True, slots=True)
class Notification:
    name: str
    enabled: bool
    operator: str
    threshold: float  # percent of the amount
    threshold_type: str = "Actual"
    contact_emails: tuple[str, ...] = ()
    contact_groups: tuple[str, ...] = ()
    contact_roles: tuple[str, ...] = ()
    locale: str | None = None
    webhook_url: str | None = None

    def crossed(self, spent: float, amount: float) -> bool:
        limit = amount * self.threshold / 100.0
        return spent >= limit if self.operator == "GreaterThanOrEqualTo" else spent > limit

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.enabled, "operator": self.operator,
                               "threshold": json_number(self.threshold), "thresholdType": self.threshold_type,
                               "contactEmails": list(self.contact_emails),
                               "contactGroups": list(self.contact_groups), "contactRoles": list(self.contact_roles)}
        if self.locale is not None:
            out["locale"] = self.locale
        if self.webhook_url is not None:
            out["webhookUrl"] = self.webhook_url
        return out


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str  # /subscriptions/{s}[/resourceGroups/{g}[/providers/Microsoft.CognitiveServices/accounts/{a}]]
    name: str
    amount: float
    time_grain: str
    start: datetime
    end: datetime
    notifications: tuple[Notification, ...] = ()
    hard_cap: bool = False
    etag: str = ""
    category: str = CATEGORY
    created_at: str = ""
    updated_at: str = ""

    @property
    def scope_key(self) -> str:
        return self.scope.lower()

    @property
    def id(self) -> str:
        """As the spec's examples write it: no leading slash."""
        return f"{self.scope.lstrip('/')}/providers/{RESOURCE_TYPE}/{self.name}"

    def period(self, now: datetime) -> tuple[datetime, datetime] | None:
        return current_period(self.start, self.end, self.time_grain, now)

    def properties(self) -> dict[str, Any]:
        """What the store keeps (and the answer shows, with the spend added)."""
        return {"category": self.category, "amount": json_number(self.amount), "timeGrain": self.time_grain,
                "timePeriod": {"startDate": iso(self.start), "endDate": iso(self.end)},
                "notifications": {n.name: n.to_json() for n in self.notifications}, "hardCap": self.hard_cap}


def json_number(value: float) -> float | int:
    """100.0 as 100 (Azure writes whole amounts and thresholds without a fraction)."""
    return int(value) if float(value).is_integer() else value


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise Invalid(f"The budget name '{name}' is invalid: use 1 to 63 letters, digits, '-' or '_'.")


def _one_of(value: Any, allowed: tuple[str, ...], what: str) -> str:
    found = next((a for a in allowed if isinstance(value, str) and a.lower() == value.lower()), None)
    if found is None:
        raise Invalid(f"Invalid {what} '{value}'. Valid values: {', '.join(allowed)}.")
    return found


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"The {what} must be a number; got '{value}'.")
    try:
        number = float(value)
    except ValueError:
        raise Invalid(f"The {what} must be a number; got '{value}'.") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise Invalid(f"The {what} must be a number; got '{value}'.")
    return number


def parse_date(value: Any, what: str) -> datetime:
    """An ISO 8601 date or date-time; naive means UTC."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"The {what} is required, as a date such as 2026-07-01T00:00:00Z.")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"The {what} '{value}' is not a valid date.") from None
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise Invalid(f"{what} must be a list of strings.")
    return tuple(v.strip() for v in value)


def _webhook(value: Any, name: str) -> str | None:
    if value is None:
        return None
    parsed = urlparse(value) if isinstance(value, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise Invalid(f"The webhookUrl of notification '{name}' must be an http or https URL; got '{value}'.")
    return value


def parse_notification(name: str, body: Any) -> Notification:
    if not isinstance(body, dict):
        raise Invalid(f"Notification '{name}' must be an object.")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid(f"The 'enabled' of notification '{name}' must be true or false.")
    threshold = _number(body.get("threshold"), f"threshold of notification '{name}'")
    if not 0 < threshold <= 1000:
        raise Invalid(f"The threshold of notification '{name}' must be greater than 0 and at most 1000 "
                      f"(a percentage of the amount); got {threshold:g}.")
    note = Notification(
        name=name, enabled=enabled, operator=_one_of(body.get("operator"), OPERATORS, "notification operator"),
        threshold=threshold, threshold_type=_one_of(body.get("thresholdType") or "Actual", THRESHOLD_TYPES,
                                                    "thresholdType"),
        contact_emails=_strings(body.get("contactEmails"), "contactEmails"),
        contact_groups=_strings(body.get("contactGroups"), "contactGroups"),
        contact_roles=_strings(body.get("contactRoles"), "contactRoles"),
        locale=body.get("locale") if isinstance(body.get("locale"), str) else None,
        webhook_url=_webhook(body.get("webhookUrl"), name))
    if not (note.contact_emails or note.contact_groups or note.contact_roles or note.webhook_url):
        raise Invalid(f"Notification '{name}' needs at least one of contactEmails, contactGroups, contactRoles "
                      "or webhookUrl.")
    return note


def _notifications(value: Any) -> tuple[Notification, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise Invalid("'notifications' must be an object of name -> notification.")
    if len(value) > MAX_NOTIFICATIONS:
        raise Invalid(f"A budget can have up to {MAX_NOTIFICATIONS} notifications; got {len(value)}.")
    for key in value:
        if not isinstance(key, str) or not key.strip() or len(key) > 128:
            raise Invalid(f"The notification name '{key}' is invalid.")
    return tuple(parse_notification(k, v) for k, v in value.items())


def _period(value: Any, now: datetime) -> tuple[datetime, datetime]:
    if not isinstance(value, dict):
        raise Invalid("The timePeriod is required, with a startDate.")
    start = parse_date(value.get("startDate"), "startDate")
    if (start.day, start.hour, start.minute, start.second, start.microsecond) != (1, 0, 0, 0, 0):
        raise Invalid(f"The start date must be first of the month; got {iso(start)}.")
    if start < EARLIEST_START:
        raise Invalid("Budget start date must be on or after June 1, 2017.")
    if start > add_months(now, 12):
        raise Invalid("Future start date should not be more than twelve months.")
    end = ten_years_after(start) if value.get("endDate") in (None, "") else parse_date(value.get("endDate"),
                                                                                          "endDate")
    if end <= start:
        raise Invalid("The start date should be less than the end date.")
    return start, end


def parse_budget(scope: str, name: str, body: Any, now: datetime) -> Budget:
    """A Budget from a PUT body; `now` is the budget clock (lapis.budgets.evaluator)."""
    check_name(name)
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise Invalid("The request body must be a budget: an object with 'properties'.")
    props = body["properties"]
    category = _one_of(props.get("category") or CATEGORY, ("Cost", "Usage"), "category")
    if category != CATEGORY:
        raise Invalid("Lapis budgets track cost: the category must be 'Cost'.")
    if props.get("filter") or props.get("filters"):
        raise Invalid("Lapis budgets take no filter: scope the budget to a resource group or an account instead.")
    amount = _number(props.get("amount"), "amount")
    if amount <= 0:
        raise Invalid(f"The amount must be greater than 0; got {amount:g}.")
    grain = _one_of(props.get("timeGrain"), tuple(GRAIN_MONTHS), "timeGrain")
    start, end = _period(props.get("timePeriod"), now)
    hard_cap = props.get("hardCap", False)
    if not isinstance(hard_cap, bool):
        raise Invalid("'hardCap' must be true or false.")
    return Budget(scope=scope, name=name, amount=amount, time_grain=grain, start=start, end=end,
                  notifications=_notifications(props.get("notifications")), hard_cap=hard_cap)


def check_new_start(budget: Budget, now: datetime) -> None:
    """On creation: a start date in the past must lie in the current time-grain period."""
    if add_months(budget.start, GRAIN_MONTHS[budget.time_grain]) <= now:
        raise Invalid("Past start date should be selected within the timegrain period: the first period of the "
                      f"budget must contain today; got {iso(budget.start)} for a {budget.time_grain} budget.")


def check_update(old: Budget, new: Budget) -> None:
    if old.start != new.start:
        raise Invalid("Start date of budgets cannot be updated. Please delete and create a new budget.")


def from_stored(scope: str, name: str, properties: dict[str, Any], etag: str, created_at: str,
                updated_at: str) -> Budget:
    """A Budget from what the store kept (written by `Budget.properties()`, so trusted)."""
    period = properties["timePeriod"]
    return Budget(scope=scope, name=name, amount=float(properties["amount"]), time_grain=properties["timeGrain"],
                  start=parse_date(period["startDate"], "startDate"), end=parse_date(period["endDate"], "endDate"),
                  notifications=tuple(parse_notification(k, v) for k, v in properties["notifications"].items()),
                  hard_cap=bool(properties.get("hardCap")), etag=etag, created_at=created_at,
                  updated_at=updated_at)
