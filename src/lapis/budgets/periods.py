"""Budget periods: which stretch of time a budget is counting now.

A budget's `timePeriod.startDate` is the first of a month at 00:00 UTC; its
time grain cuts the time from there into periods of 1 (Monthly), 3
(Quarterly) or 12 (Annually) calendar months. The period that contains `now`
is the one whose spend counts; spend resets at the next period's start. The
budget stops at `endDate`: after it there is no current period, and the last
period is cut short at it.

Forecasted spend (for `thresholdType: Forecasted`) is Lapis's choice, a
straight line: the spend so far, divided by the time elapsed in the period
(counted as at least one day, so the first minutes of a period do not
extrapolate a few cents into a fortune), times the period's length.
"""

from __future__ import annotations

from datetime import datetime, timezone

GRAIN_MONTHS = {"Monthly": 1, "Quarterly": 3, "Annually": 12}
MIN_FORECAST_BASIS_S = 86400.0


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later; `moment` is a first of the month."""
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


def current_period(start: datetime, end: datetime, grain: str,
                   now: datetime) -> tuple[datetime, datetime] | None:
    """[period start, period end) containing `now`, or None before `start` or from `end` on."""
    if now < start or now >= end:
        return None
    step = GRAIN_MONTHS[grain]
    months = (now.year - start.year) * 12 + now.month - start.month
    first = add_months(start, months // step * step)
    if first > now:  # cannot happen for a first-of-month start; kept as a guard
        first = add_months(first, -step)
    return first, min(add_months(first, step), end)


def forecast(spent: float, period: tuple[datetime, datetime], now: datetime) -> float:
    """Spend expected by the end of the period, at the pace so far (see the module docstring)."""
    start, end = period
    elapsed = max((now - start).total_seconds(), MIN_FORECAST_BASIS_S)
    length = (end - start).total_seconds()
    return spent * max(length / elapsed, 1.0)


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def iso(moment: datetime) -> str:
    """2026-07-01T00:00:00Z: the form Azure writes budget dates in."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ten_years_after(start: datetime) -> datetime:
    """Azure's default endDate for a Cost budget."""
    return add_months(start, 120)

