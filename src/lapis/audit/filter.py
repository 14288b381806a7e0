"""The Activity Log's `$filter`: the few patterns Azure allows, parsed.

    eventTimestamp ge '2024-05-01T00:00:00Z' and eventTimestamp le '2024-05-02T00:00:00Z'
        [and resourceGroupName eq 'rg' | resourceUri eq '/subscriptions/…' | resourceId eq '…'
         | resourceProvider eq 'Microsoft.CognitiveServices' | correlationId eq '…']
        [and caller eq 'admin@lapis.local'] [and status eq 'Failed']

`az monitor activity-log list` sends exactly this (its timestamps unquoted,
caller and status included). A start time is required, as on Azure; without
an end time the window ends now. Values compare without case. Anything else
is a 400 BadRequest (Lapis's wording: no capture of Azure's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from lapis.diagnostics import errors
from lapis.diagnostics.shaping import iso

_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ge|gt|le|lt)\s+('(?:[^']|'')*'|\S+)\s*$", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_FRACTION = re.compile(r"(\.\d{1,6})\d*")
FIELDS = {"resourcegroupname": "resource_group", "resourceuri": "resource_id", "resourceid": "resource_id",
          "resourceprovider": "resource_provider", "correlationid": "correlation_id", "caller": "caller",
          "status": "status"}


@dataclass(slots=True)
class ActivityFilter:
    start: str  # in the stored form (lapis.diagnostics.shaping.iso), inclusive
    end: str
    resource_group: str | None = None
    resource_id: str | None = None
    resource_provider: str | None = None
    correlation_id: str | None = None
    caller: str | None = None
    status: str | None = None


def parse_time(text: str) -> float:
    """ISO 8601 with or without a zone (none means UTC, as az sends it); epoch seconds."""
    cleaned = _FRACTION.sub(r"\1", text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise errors.bad_request(f"The time '{text}' in $filter is not an ISO 8601 date and time.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _value(raw: str) -> str:
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        return raw[1:-1].replace("''", "'")
    return raw


def parse_filter(text: str | None, now: float) -> ActivityFilter:
    if not text or not text.strip():
        raise errors.bad_request("The $filter query parameter is required and must give a start time: "
                                 "$filter=eventTimestamp ge '<ISO 8601 time>'.")
    start: float | None = None
    end: float | None = None
    found: dict[str, str] = {}
    for clause in _AND.split(text.strip()):
        match = _CLAUSE.match(clause)
        if not match:
            raise errors.bad_request(f"The $filter clause '{clause.strip()}' is not supported. Use "
                                     "eventTimestamp ge/le '<time>' and one of resourceGroupName, resourceUri, "
                                     "resourceProvider or correlationId eq '<value>'.")
        name, op, raw = match.group(1).lower(), match.group(2).lower(), _value(match.group(3))
        if name == "eventtimestamp":
            if op in ("ge", "gt"):
                start = parse_time(raw)
            elif op in ("le", "lt"):
                end = parse_time(raw)
            else:
                raise errors.bad_request("eventTimestamp takes ge and le in $filter.")
        elif name in FIELDS and op == "eq":
            found[FIELDS[name]] = raw
        else:
            raise errors.bad_request(f"The $filter field '{match.group(1)}' with '{op}' is not supported.")
    if start is None:
        raise errors.bad_request("The $filter must give a start time: eventTimestamp ge '<ISO 8601 time>'.")
    end = now if end is None else end
    if end < start:
        raise errors.bad_request("The start time in $filter is after the end time.")
    return ActivityFilter(start=iso(start), end=iso(end), **found)
