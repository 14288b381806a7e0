"""Budgets without a server: the body's rules (Azure's and Lapis's), periods and
their boundaries, the forecast, the error bodies, and the CLI's --notification."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from lapis.budgets.model import Invalid, check_new_start, check_update, parse_budget
from lapis.budgets.periods import add_months, current_period, forecast, iso
from lapis.cli.budgets import parse_notification, scope_path
from lapis.cli.client import CliError
from lapis.errors import catalogue as errors

UTC = timezone.utc
NOW = datetime(2026, 7, 18, 9, 30, tzinfo=UTC)
SCOPE = "/subscriptions/s1/resourceGroups/rg1"


def body(**props) -> dict:
    base = {"category": "Cost", "amount": 100, "timeGrain": "Monthly",
            "timePeriod": {"startDate": "2026-07-01T00:00:00Z"}}
    base.update(props)
    return {"properties": base}


def refused(payload, now: datetime = NOW) -> str:
    with pytest.raises(Invalid) as caught:
        parse_budget(SCOPE, "b1", payload, now)
    return str(caught.value)


def test_a_budget_as_azure_takes_it():
    note = {"enabled": True, "operator": "GreaterThan", "threshold": 80, "contactEmails": ["a@contoso.com"],
            "contactRoles": ["Owner"], "locale": "en-us"}
    budget = parse_budget(SCOPE, "b1", body(amount=100.65, timeGrain="quarterly",
                                            timePeriod={"startDate": "2026-07-01", "endDate": "2027-06-30"},
                                            notifications={"Actual_GreaterThan_80_Percent": note}), NOW)
    props = budget.properties()
    assert props["amount"] == 100.65 and props["timeGrain"] == "Quarterly" and props["category"] == "Cost"
    assert props["timePeriod"] == {"startDate": "2026-07-01T00:00:00Z", "endDate": "2027-06-30T00:00:00Z"}
    assert props["notifications"]["Actual_GreaterThan_80_Percent"] == {
        "enabled": True, "operator": "GreaterThan", "threshold": 80, "thresholdType": "Actual",
        "contactEmails": ["a@contoso.com"], "contactGroups": [], "contactRoles": ["Owner"], "locale": "en-us"}
    assert props["hardCap"] is False
    assert budget.id == "subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Consumption/budgets/b1"


def test_defaults_and_lapis_additions():
    budget = parse_budget(SCOPE, "b1", body(hardCap=True, notifications={
        "hook": {"operator": "GreaterThanOrEqualTo", "threshold": 50, "thresholdType": "Forecasted",
                 "webhookUrl": "http://127.0.0.1:9/hook"}}), NOW)
    assert budget.end == datetime(2036, 7, 1, tzinfo=UTC)  # ten years on, as Azure defaults it
    assert budget.hard_cap is True
    note = budget.notifications[0]
    assert note.enabled is True and note.webhook_url == "http://127.0.0.1:9/hook"
    assert note.to_json()["webhookUrl"] == "http://127.0.0.1:9/hook"


@pytest.mark.parametrize("props, fragment", [
    ({"amount": 0}, "amount must be greater than 0"),
    ({"amount": "lots"}, "amount must be a number"),
    ({"amount": True}, "amount must be a number"),
    ({"timeGrain": "Weekly"}, "Invalid timeGrain 'Weekly'"),
    ({"category": "Usage"}, "category must be 'Cost'"),
    ({"timePeriod": {"startDate": "2026-07-02T00:00:00Z"}}, "must be first of the month"),
    ({"timePeriod": {"startDate": "2017-05-01"}}, "on or after June 1, 2017"),
    ({"timePeriod": {"startDate": "2027-08-01"}}, "more than twelve months"),
    ({"timePeriod": {"startDate": "2026-07-01", "endDate": "2026-06-30"}}, "less than the end date"),
    ({"timePeriod": {}}, "startDate is required"),
    ({"timePeriod": {"startDate": "July"}}, "is not a valid date"),
    ({"filter": {"dimensions": {"name": "ResourceId", "operator": "In", "values": ["x"]}}}, "take no filter"),
    ({"hardCap": "yes"}, "'hardCap' must be true or false"),
    ({"notifications": {f"n{i}": {"operator": "GreaterThan", "threshold": 10, "contactEmails": ["a@b.c"]}
                        for i in range(6)}}, "up to 5 notifications"),
    ({"notifications": {"n": {"operator": "Equal", "threshold": 10, "contactEmails": ["a@b.c"]}}},
     "Invalid notification operator 'Equal'"),
    ({"notifications": {"n": {"operator": "GreaterThan", "threshold": 1001, "contactEmails": ["a@b.c"]}}},
     "at most 1000"),
    ({"notifications": {"n": {"operator": "GreaterThan", "threshold": 0, "contactEmails": ["a@b.c"]}}},
     "greater than 0"),
    ({"notifications": {"n": {"operator": "GreaterThan", "threshold": 80}}}, "needs at least one of"),
    ({"notifications": {"n": {"operator": "GreaterThan", "threshold": 80, "webhookUrl": "ftp://x/y"}}},
     "http or https URL"),
])
def test_what_a_budget_may_not_be(props, fragment):
    assert fragment in refused(body(**props))


def test_names_and_bodies():
    assert "object with 'properties'" in refused({"nothing": 1})
    assert "object with 'properties'" in refused([1, 2])
    with pytest.raises(Invalid, match="budget name"):
        parse_budget(SCOPE, "has space", body(), NOW)


def test_start_dates_of_new_and_changed_budgets():
    this_month = parse_budget(SCOPE, "b1", body(), NOW)
    check_new_start(this_month, NOW)
    last_month = parse_budget(SCOPE, "b1", body(timePeriod={"startDate": "2026-06-01"}), NOW)
    with pytest.raises(Invalid, match="within the timegrain period"):
        check_new_start(last_month, NOW)
    check_new_start(parse_budget(SCOPE, "b1", body(timePeriod={"startDate": "2026-06-01"}, timeGrain="Quarterly"),
                                 NOW), NOW)  # its first quarter still runs
    with pytest.raises(Invalid, match="Start date of budgets cannot be updated"):
        check_update(this_month, last_month)


def test_periods_by_grain_and_their_boundaries():
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2036, 1, 1, tzinfo=UTC)
    assert current_period(start, end, "Monthly", NOW) == (datetime(2026, 7, 1, tzinfo=UTC),
                                                          datetime(2026, 8, 1, tzinfo=UTC))
    assert current_period(start, end, "Quarterly", NOW) == (datetime(2026, 7, 1, tzinfo=UTC),
                                                            datetime(2026, 10, 1, tzinfo=UTC))
    assert current_period(start, end, "Annually", NOW) == (start, datetime(2027, 1, 1, tzinfo=UTC))
    boundary = datetime(2026, 8, 1, tzinfo=UTC)
    assert current_period(start, end, "Monthly", boundary)[0] == boundary  # a period starts inclusive
    assert current_period(start, end, "Monthly", datetime(2025, 12, 31, 23, 59, tzinfo=UTC)) is None
    assert current_period(start, end, "Monthly", end) is None  # expired
    short = datetime(2026, 7, 20, tzinfo=UTC)
    assert current_period(start, short, "Monthly", NOW) == (datetime(2026, 7, 1, tzinfo=UTC), short)
    assert add_months(datetime(2026, 11, 1, tzinfo=UTC), 3) == datetime(2027, 2, 1, tzinfo=UTC)
    assert iso(boundary) == "2026-08-01T00:00:00Z"


def test_forecast_is_a_straight_line_over_at_least_a_day():
    period = (datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC))
    assert forecast(10.0, period, datetime(2026, 7, 11, tzinfo=UTC)) == pytest.approx(31.0)
    assert forecast(1.0, period, datetime(2026, 7, 1, 0, 5, tzinfo=UTC)) == pytest.approx(31.0)  # one day at least
    assert forecast(5.0, period, datetime(2026, 7, 31, 23, tzinfo=UTC)) >= 5.0


def test_error_bodies():
    exceeded = errors.budget_exceeded("cap", SCOPE, 1.0, 1.25, "Monthly", "2026-07-01T00:00:00Z",
                                      "2026-08-01T00:00:00Z", 1234)
    assert exceeded.status == 429 and exceeded.code == "BudgetExceeded"
    assert exceeded.headers == {"retry-after": "1234", "retry-after-ms": "1234000"}
    message = json.loads(exceeded.body)["error"]["message"]
    assert message == (f"The budget 'cap' of {SCOPE} is spent: 1.25 USD of 1.00 USD in the monthly period that "
                       "began 2026-07-01T00:00:00Z. Requests are refused until the budget resets at "
                       "2026-08-01T00:00:00Z (in 1234 seconds).")
    assert errors.money(0.0000567) == "0.000057" and errors.money(0.00001) == "0.00001"
    assert errors.money(12.5) == "12.50"
    changed = errors.budget_changed("b1", "req-1")
    assert changed.status == 400 and json.loads(changed.body) == {"error": {"code": "400", "message": (
        "There are changes made to Budget b1. Please get the latest budget to avoid overwrite. (Request ID: req-1)")}}
    assert errors.budget_not_found("b1", SCOPE).status == 404


def test_cli_notifications_and_scopes():
    name, note = parse_notification("80%:webhook=http://127.0.0.1:9/h?a=1,b=2,email=a@b.c,email=d@e.f")
    assert name == "Actual_GreaterThan_80_Percent"
    assert note["webhookUrl"] == "http://127.0.0.1:9/h?a=1,b=2"  # a comma not followed by key= stays in the URL
    assert note["contactEmails"] == ["a@b.c", "d@e.f"] and note["threshold"] == 80
    name, note = parse_notification("100:operator=gte,type=forecasted,name=Over")
    assert name == "Over" and note["operator"] == "GreaterThanOrEqualTo" and note["thresholdType"] == "Forecasted"
    for bad in ("lots:webhook=x", "80%:colour=red", "80%:operator=lt", "80%:webhook"):
        with pytest.raises(CliError):
            parse_notification(bad)
    assert scope_path("s", None, None) == ["subscriptions", "s"]
    assert scope_path("s", "g", "a")[-3:] == ["Microsoft.CognitiveServices", "accounts", "a"]
    with pytest.raises(CliError):
        scope_path("s", None, "a")
