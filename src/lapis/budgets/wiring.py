"""Start and stop the budget evaluator (called by create_app).

Start: after metering (usage is what budgets read), the evaluator runs once
before the server answers, so a restarted server enforces its hard caps at
once. With metering on, it hears of requests that used tokens (to evaluate
soon) and shows its numbers on /metrics. Stop: before the store closes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lapis.budgets.evaluator import Budgets

log = logging.getLogger("lapis.budgets")


async def start(services: Any, metering: Any = None) -> Budgets:
    settings = services.settings
    offset = settings.budget_clock_offset_s
    if offset:
        log.warning("LAPIS_BUDGET_CLOCK_OFFSET_S=%s moves the budget clock: for tests only", offset)
    budgets = Budgets(services.store.db, services.directory, settings.budget_interval_s,
                      (lambda: time.time() + offset) if offset else time.time)
    services.budgets = budgets
    if metering is not None:
        services.observers.add(budgets.observe)
        metering.hub.register(budgets.collect)
    await budgets.start()
    return budgets


async def stop(services: Any) -> None:
    if getattr(services, "budgets", None) is not None:
        await services.budgets.stop()
