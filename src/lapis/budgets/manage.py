"""The budget operations behind the ARM routes (lapis.management.budgets).

Each takes the budget scope already checked to exist, as a path with its
parts spelled as stored (`/subscriptions/{s}`, `.../resourceGroups/{g}`,
`.../providers/Microsoft.CognitiveServices/accounts/{a}`), and answers the ARM
body of a budget:

    {"id": "subscriptions/{s}/.../providers/Microsoft.Consumption/budgets/{name}",
     "name": ..., "type": "Microsoft.Consumption/budgets", "eTag": "\"1dc...\"",
     "properties": {category, amount, timeGrain, timePeriod, notifications, hardCap,
                    "currentSpend": {"amount", "unit": "USD"}, "forecastSpend": {"amount", "unit"}}}

`id` has no leading slash, as the spec's examples show it. currentSpend is the
committed spend of the current period (0 before the budget starts and after
it ends), worked out on every read; forecastSpend is lapis.budgets.periods'
straight line. PUT creates (201) or replaces (200); an eTag in the body must
be the budget's current one (Consumption's 400 otherwise); the startDate of
an existing budget cannot change. DELETE removes the budget and the record
of the notifications it sent.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from lapis.budgets.evaluator import Budgets
from lapis.budgets.model import RESOURCE_TYPE, Budget, Invalid, check_name, check_new_start, check_update, \
    parse_budget
from lapis.budgets.periods import forecast
from lapis.budgets.store import EtagMismatch
from lapis.errors.budgets import budget_changed, budget_invalid, budget_not_found


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


async def budget_json(budgets: Budgets, budget: Budget) -> dict[str, Any]:
    now = budgets.now()
    period, spent = await budgets.current(budget, now)
    projected = forecast(spent, period, now) if period is not None else 0.0
    properties = budget.properties()
    properties["currentSpend"] = {"amount": round(spent, 9), "unit": "USD"}
    properties["forecastSpend"] = {"amount": round(projected, 9), "unit": "USD"}
    return {"id": budget.id, "name": budget.name, "type": RESOURCE_TYPE, "eTag": budget.etag,
            "properties": properties}


async def put_budget(budgets: Budgets, scope: str, name: str, body: Any, request_id: str) -> tuple[dict, bool]:
    now = budgets.now()
    try:
        budget = parse_budget(scope, name, body, now)
        old = await budgets.store.get(scope, name)
        if old is None:
            check_new_start(budget, now)
        else:
            check_update(old, budget)
    except Invalid as bad:
        raise budget_invalid(str(bad), request_id) from None
    etag = body.get("eTag") if isinstance(body.get("eTag"), str) else None
    try:
        stored, created = await budgets.store.put(budget, etag, _stamp())
    except EtagMismatch as changed:
        raise budget_changed(str(changed), request_id) from None
    await budgets.refresh()
    return await budget_json(budgets, stored), created


async def get_budget(budgets: Budgets, scope: str, name: str, request_id: str) -> dict[str, Any]:
    budget = await budgets.store.get(scope, name)
    if budget is None:
        raise budget_not_found(name, scope, request_id)
    return await budget_json(budgets, budget)


async def list_budgets(budgets: Budgets, scope: str) -> list[dict[str, Any]]:
    return [await budget_json(budgets, b) for b in await budgets.store.at_scope(scope)]


async def delete_budget(budgets: Budgets, scope: str, name: str, request_id: str) -> bool:
    try:
        check_name(name)
    except Invalid as bad:
        raise budget_invalid(str(bad), request_id) from None
    removed = await budgets.store.delete(scope, name)
    await budgets.refresh()
    return removed
