"""Usage and cost without a server: prices from the catalogue, Cost Management's
query body (timeframes, checks, Azure's 400) and the columns and rows it answers."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from lapis.catalog import load_catalogue
from lapis.cli.consumption import grouping, to_items
from lapis.errors.base import ApiError
from lapis.store.metering import UsageScope
from lapis.usage import costquery, parse_scope
from lapis.usage.pricing import FREE, prices_for

NOW = datetime(2026, 3, 18, 15, 0, tzinfo=timezone.utc)  # a Wednesday
CATALOGUE = load_catalogue()


def test_prices_come_from_the_catalogue():
    mini = CATALOGUE.model("gpt-4o-mini")
    standard = prices_for(mini, "Standard")
    assert standard.input == pytest.approx(mini.price_in_per_1k * 1e6)  # nano-USD per token
    assert standard.output == pytest.approx(mini.price_out_per_1k * 1e6)
    assert standard.cached_input == pytest.approx(standard.input / 2)
    assert prices_for(mini, "GlobalBatch").input == pytest.approx(standard.input / 2)
    assert prices_for(mini, "ProvisionedManaged") is FREE
    assert prices_for(None, "Standard") is FREE
    cost = standard.cost(prompt=1000, cached=400, completion=50)
    assert cost == (round(600 * standard.input), round(400 * standard.cached_input), round(50 * standard.output))


def test_scopes():
    assert parse_scope("/subscriptions/S") == UsageScope("S")
    assert parse_scope("subscriptions/S/resourceGroups/G/") == UsageScope("S", "G")
    arm = "/subscriptions/S/resourcegroups/G/providers/microsoft.cognitiveservices/accounts/A"
    assert parse_scope(arm) == UsageScope("S", "G", arm)
    for bad in ("", "/subscriptions", "/subscriptions/S/resourceGroups", "/providers/x",
                "/subscriptions/S/resourceGroups/G/providers/Microsoft.Storage/storageAccounts/A"):
        with pytest.raises(ValueError):
            parse_scope(bad)


def _bad(body) -> str:
    with pytest.raises(ApiError) as caught:
        costquery.parse(body, now=NOW)
    error = json.loads(caught.value.body)["error"]
    assert caught.value.status == 400 and error["code"] == "BadRequest"
    assert error["message"].startswith("Invalid query definition: ")
    return error["message"]


def test_timeframes():
    def period(timeframe: str, **extra) -> tuple[datetime, datetime]:
        q = costquery.parse({"type": "ActualCost", "timeframe": timeframe, **extra}, now=NOW)
        return q.start, q.end

    utc = timezone.utc
    assert period("MonthToDate") == (datetime(2026, 3, 1, tzinfo=utc), NOW)
    assert period("billingmonthtodate") == (datetime(2026, 3, 1, tzinfo=utc), NOW)
    assert period("TheLastMonth") == (datetime(2026, 2, 1, tzinfo=utc), datetime(2026, 3, 1, tzinfo=utc))
    assert period("WeekToDate") == (datetime(2026, 3, 16, tzinfo=utc), NOW)
    custom = {"timePeriod": {"from": "2026-01-05", "to": "2026-01-06"}}
    assert period("Custom", **custom) == (datetime(2026, 1, 5, tzinfo=utc), datetime(2026, 1, 7, tzinfo=utc))
    custom = {"timePeriod": {"from": "2026-01-05T00:00:00Z", "to": "2026-01-05T23:59:59Z"}}
    assert period("Custom", **custom)[1] == datetime(2026, 1, 6, tzinfo=utc)
    january = costquery.parse({"type": "Usage", "timeframe": "TheLastMonth"},
                              now=datetime(2026, 1, 10, tzinfo=utc))
    assert january.start == datetime(2025, 12, 1, tzinfo=utc)


def test_query_checks():
    assert "timeframe" in _bad({"type": "Usage", "timeframe": "Yesterday"})
    assert "'type'" in _bad({"type": "Forecast", "timeframe": "MonthToDate"})
    assert "timePeriod" in _bad({"type": "Usage", "timeframe": "Custom"})
    assert "granularity" in _bad({"type": "Usage", "timeframe": "MonthToDate", "dataset": {"granularity": "Hourly"}})
    bad_column = {"type": "Usage", "timeframe": "MonthToDate",
                  "dataset": {"aggregation": {"x": {"name": "Tokens", "function": "Sum"}}}}
    assert "unknown column" in _bad(bad_column)
    bad_function = {"type": "Usage", "timeframe": "MonthToDate",
                    "dataset": {"aggregation": {"x": {"name": "Cost", "function": "Avg"}}}}
    assert "Sum" in _bad(bad_function)
    three = [{"type": "Dimension", "name": n} for n in ("Meter", "Sku", "Caller")]
    assert "at most 2" in _bad({"type": "Usage", "timeframe": "MonthToDate", "dataset": {"grouping": three}})
    assert "Colour" in _bad({"type": "Usage", "timeframe": "MonthToDate",
                             "dataset": {"grouping": [{"type": "Dimension", "name": "Colour"}]}})
    assert "operator: In" in _bad({"type": "Usage", "timeframe": "MonthToDate",
                             "dataset": {"filter": {"dimensions": {"name": "Sku", "operator": "Like", "values": []}}}})
    assert "JSON object" in _bad([1, 2])


def _row(day: int, deployment: str, model: str, prompt: int, cached: int, completion: int, tags: str) -> dict:
    return {"usage_day": day, "resource_group": "RG1", "account_arm_id": "/subscriptions/S/resourceGroups/RG1/"
            "providers/Microsoft.CognitiveServices/accounts/A", "location": "eastus", "deployment": deployment,
            "model": model, "model_version": "v1", "sku": "Standard", "caller": "key1", "operation": "x",
            "tags": tags, "requests": 1, "prompt_tokens": prompt, "cached_tokens": cached,
            "completion_tokens": completion, "cost_input_nano": (prompt - cached) * 10, "cost_cached_nano": cached * 5,
            "cost_output_nano": completion * 40}


class FakeStore:
    async def usage_groups(self, scope, start_ms, end_ms):
        return [_row(20260301, "chat", "gpt-4o", 1000, 200, 100, '{"Team":"search"}'),
                _row(20260302, "chat", "gpt-4o", 500, 0, 50, '{"Team":"search"}'),
                _row(20260302, "mini", "gpt-4o-mini", 10, 0, 0, "{}")]


async def run(dataset: dict) -> dict:
    q = costquery.parse({"type": "Usage", "timeframe": "MonthToDate", "dataset": dataset}, now=NOW)
    return await costquery.run_query(FakeStore(), UsageScope("S"), q)  # type: ignore[arg-type]


async def test_columns_and_rows():
    agg = {"cost": {"name": "PreTaxCost", "function": "Sum"}, "in": {"name": "InputTokens", "function": "sum"},
           "cached": {"name": "CachedInputTokens", "function": "Sum"},
           "q": {"name": "UsageQuantity", "function": "Sum"}}
    by_model = await run({"granularity": "None", "aggregation": agg, "grouping": [{"type": "Dimension",
                                                                                    "name": "modelname"}]})
    assert [c["name"] for c in by_model["columns"]] == ["PreTaxCost", "InputTokens", "CachedInputTokens",
                                                         "UsageQuantity", "ModelName", "Currency"]
    assert by_model["rows"] == [
        [(800 * 10 + 200 * 5 + 100 * 40 + 500 * 10 + 50 * 40) / 1e9, 1500, 200, 1.65, "gpt-4o", "USD"],
        [100 / 1e9, 10, 0, 0.01, "gpt-4o-mini", "USD"]]
    assert by_model["nextLink"] is None
    daily = await run({"granularity": "Daily", "aggregation": {"t": {"name": "TotalTokens", "function": "Sum"}},
                       "grouping": [{"type": "TagKey", "name": "team"}]})
    assert [c["name"] for c in daily["columns"]] == ["TotalTokens", "UsageDate", "TagKey", "TagValue", "Currency"]
    assert daily["rows"] == [[1100, 20260301, "team", "search", "USD"], [10, 20260302, "", "", "USD"],
                             [550, 20260302, "team", "search", "USD"]]
    monthly = await run({"granularity": "Monthly", "aggregation": {"t": {"name": "OutputTokens", "function": "Sum"}},
                         "grouping": [{"type": "Dimension", "name": "Meter"}]})
    assert monthly["columns"][1] == {"name": "BillingMonth", "type": "Datetime"}
    assert [r[2] for r in monthly["rows"]] == ["gpt-4o-mini-v1 Input Tokens", "gpt-4o-v1 Cached Input Tokens",
                                               "gpt-4o-v1 Input Tokens", "gpt-4o-v1 Output Tokens"]
    assert [r[0] for r in monthly["rows"]] == [0, 0, 0, 150]
    assert {r[1] for r in monthly["rows"]} == {"2026-03-01T00:00:00"}
    filtered = await run({"aggregation": {"t": {"name": "InputTokens", "function": "Sum"}}, "filter": {
        "and": [{"dimensions": {"name": "DeploymentName", "operator": "In", "values": ["CHAT", "other"]}},
                {"not": {"tags": {"name": "team", "operator": "In", "values": ["nobody"]}}}]}})
    assert filtered["rows"] == [[1500, "USD"]]
    nothing = await run({"aggregation": {"t": {"name": "Cost", "function": "Sum"}},
                         "filter": {"tags": {"name": "team", "operator": "In", "values": ["nobody"]}}})
    assert nothing["rows"] == [[0.0, "USD"]]


def test_cli_grouping_and_items():
    assert grouping("deployment") == [{"type": "Dimension", "name": "DeploymentName"}]
    assert grouping("tag:CostCenter") == [{"type": "TagKey", "name": "CostCenter"}]
    assert grouping("none") == []
    items = to_items({"columns": [{"name": "InputTokens"}, {"name": "Cost"}, {"name": "ModelName"},
                                  {"name": "Currency"}], "rows": [[5, 0.5, "gpt-4o", "USD"]]})
    assert items == [{"inputTokens": 5, "cost": 0.5, "modelName": "gpt-4o", "currency": "USD"}]
