"""Budget errors: Microsoft.Consumption's management answers and Lapis's hard-cap 429.

Management (ARM, Microsoft.Consumption/budgets): Consumption answers with the
common envelope but puts the HTTP status in `code` and ends the message with
the request id, as a captured 400 shows:

    {"error": {"code": "400", "message": "There are changes made to Budget B. Please get the
     latest budget to avoid overwrite. (Request ID: c9fe2605-...)"}}

The validation messages follow the wording Azure's documentation and error
reports give; the 404 for a missing budget is Lapis's choice in the same form.

Data plane (Lapis only): a budget with `hardCap: true` whose period's spend
reached its amount makes every account in its scope answer

    429 {"error": {"code": "BudgetExceeded", "message": "The budget 'B' of <scope> is spent: ...
         Requests are refused until the budget resets at 2026-08-01T00:00:00Z (in N seconds)."}}
    retry-after: N              seconds until the next period starts
    retry-after-ms: N * 1000

in the gateway's family (code and message only), after credentials are
checked and before any deployment or rate limit is looked at.
"""

from __future__ import annotations

from lapis.errors.base import ApiError, _gateway, arm

__all__ = ["budget_changed", "budget_exceeded", "budget_invalid", "budget_not_found", "money"]


def _with_request(message: str, request_id: str) -> str:
    return f"{message} (Request ID: {request_id})" if request_id else message


def budget_invalid(message: str, request_id: str = "") -> ApiError:
    """400: a budget body Consumption refuses (lapis.budgets.model.Invalid says why)."""
    return arm(400, "400", _with_request(message, request_id))


def budget_changed(name: str, request_id: str = "") -> ApiError:
    """400: the PUT's eTag is not the budget's any more (captured wording)."""
    return arm(400, "400", _with_request(f"There are changes made to Budget {name}. Please get the latest budget "
                                         "to avoid overwrite.", request_id))


def budget_not_found(name: str, scope: str, request_id: str = "") -> ApiError:
    return arm(404, "404", _with_request(f"Budget '{name}' was not found at scope '{scope}'.", request_id))


def money(amount: float) -> str:
    """USD with two decimals, or up to six when the amount is under a cent."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"{amount:.2f}"
    return f"{amount:.6f}".rstrip("0")


def budget_exceeded(name: str, scope: str, amount: float, spent: float, time_grain: str, period_start: str,
                    reset: str, retry_after_s: int) -> ApiError:
    """429 for the data plane while a hard-capped budget is spent (see the module docstring)."""
    message = (f"The budget '{name}' of {scope} is spent: {money(spent)} USD of {money(amount)} USD in the "
               f"{time_grain.lower()} period that began {period_start}. Requests are refused until the budget "
               f"resets at {reset} (in {retry_after_s} seconds).")
    return _gateway(429, "BudgetExceeded", message,
                    {"retry-after": str(retry_after_s), "retry-after-ms": str(retry_after_s * 1000)})
