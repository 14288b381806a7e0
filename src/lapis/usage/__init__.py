"""Usage and cost: every request's tokens, priced from the catalogue, kept exactly once.

    pricing.py    prices per token from the catalogue (nano-USD)
    meter.py      the durable, exactly-once writer (journal line first, per-minute sums and marks after)
    journal.py    the per-process append-only journal under LAPIS_HOME/usage, replayed at start-up
    totals.py     usage_totals(store, scope, start, end): for budgets and the CLI
    costquery.py  Cost Management's query API over the metered requests
"""

from lapis.usage.totals import UsageTotals, parse_scope, usage_totals

__all__ = ["UsageTotals", "parse_scope", "usage_totals"]
