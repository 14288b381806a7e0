"""What a crossed threshold sends: Lapis's budget notification, POSTed to `webhookUrl`.

    POST {webhookUrl}
    Content-Type: application/json

    {"schemaId": "Lapis.BudgetNotification",
     "budgetId": "subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Consumption/budgets/{name}",
     "budgetName": "...", "scope": "/subscriptions/{s}/resourceGroups/{g}",
     "category": "Cost", "timeGrain": "Monthly", "amount": 100.0, "unit": "USD",
     "notification": {"name": "Actual_GreaterThan_80_Percent", "operator": "GreaterThan",
                      "threshold": 80, "thresholdType": "Actual",
                      "contactEmails": [...], "contactGroups": [...], "contactRoles": [...]},
     "currentSpend": {"amount": 81.25, "unit": "USD"},
     "forecastSpend": {"amount": 130.0, "unit": "USD"},
     "spentPercent": 81.25,
     "period": {"startDate": "2026-07-01T00:00:00Z", "endDate": "2026-08-01T00:00:00Z"},
     "hardCap": false,
     "sentAt": "2026-07-18T09:30:12Z"}

The body is Lapis's own (Azure hands budget alerts to action groups and
email, neither of which Lapis has). A 2xx is delivered; anything else, a
timeout or a refused connection is tried again, ATTEMPTS times in all with a
growing pause, then given up ("failed"). A notification without a webhookUrl
is only logged ("recorded"): Lapis sends no email.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any, Callable

import aiohttp

from lapis.budgets.model import Budget, Notification
from lapis.budgets.periods import iso

log = logging.getLogger("lapis.budgets")

SCHEMA = "Lapis.BudgetNotification"
ATTEMPTS = 3
BACKOFF_S = 1.0
TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)


def payload(budget: Budget, note: Notification, spent: float, forecast: float,
            period: tuple[datetime, datetime], now: datetime) -> dict[str, Any]:
    spec = note.to_json()
    spec.pop("enabled", None)
    spec.pop("webhookUrl", None)
    return {"schemaId": SCHEMA, "budgetId": budget.id, "budgetName": budget.name, "scope": budget.scope,
            "category": budget.category, "timeGrain": budget.time_grain, "amount": budget.amount, "unit": "USD",
            "notification": {"name": note.name, **spec},
            "currentSpend": {"amount": round(spent, 9), "unit": "USD"},
            "forecastSpend": {"amount": round(forecast, 9), "unit": "USD"},
            "spentPercent": round(100.0 * spent / budget.amount, 4),
            "period": {"startDate": iso(period[0]), "endDate": iso(period[1])},
            "hardCap": budget.hard_cap, "sentAt": iso(now)}


async def deliver(session: Callable[[], aiohttp.ClientSession], url: str, body: dict[str, Any],
                  attempts: int = ATTEMPTS, backoff_s: float | None = None) -> bool:
    """POST `body` to `url` until a 2xx; True when delivered."""
    backoff_s = BACKOFF_S if backoff_s is None else backoff_s
    data = json.dumps(body, separators=(",", ":")).encode()
    for attempt in range(1, attempts + 1):
        try:
            async with session().post(url, data=data, timeout=TIMEOUT,
                                      headers={"Content-Type": "application/json"}) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return True
                log.warning("budget webhook %s answered HTTP %d (attempt %d of %d)", url, response.status,
                            attempt, attempts)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as failure:
            log.warning("budget webhook %s failed: %r (attempt %d of %d)", url, failure, attempt, attempts)
        if attempt < attempts:
            await asyncio.sleep(backoff_s * attempt)
    return False
