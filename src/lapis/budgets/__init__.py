"""Budgets: Microsoft.Consumption/budgets over the metered usage, with Lapis's hard cap.

    model.py      the budget body, checked (Azure's rules and Lapis's additions)
    periods.py    which period a budget counts now, and its forecast
    store.py      the budgets table and the once-per-period notification claims
    evaluator.py  Budgets: spend, notifications, and the hard caps the data plane checks
    notify.py     the webhook body and its delivery
    manage.py     the operations behind the ARM routes (lapis.management.budgets)

Wiring (app.py): `services.budgets = Budgets(db, directory, interval_s, clock)`,
`await start()`, `observers.add(budgets.observe)`, `/metrics` gets `collect`;
the data plane calls `services.budgets.check(entry)` once credentials pass.
"""

from lapis.budgets.evaluator import Block, Budgets
from lapis.budgets.model import Budget, Invalid, Notification, parse_budget

__all__ = ["Block", "Budget", "Budgets", "Invalid", "Notification", "parse_budget"]
