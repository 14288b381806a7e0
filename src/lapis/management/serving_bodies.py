"""Reading the serving admin API's JSON bodies: typed fields, names, ids. No I/O.

Every refusal is ARM's error envelope with status 400. Lapis's choice of
codes (Azure has no such API): `InvalidParameter` for a value that is
missing, of the wrong type or out of range, and ARM's own
`LinkedInvalidPropertyId` for a resource id that does not parse.
"""

from __future__ import annotations

import math
import re
from typing import Any

from lapis.errors import ApiError
from lapis.errors import catalogue as errors

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DEPLOYMENT_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.CognitiveServices/accounts/([^/]+)"
    r"/deployments/([^/]+)$", re.IGNORECASE)
DEPLOYMENT_ID_FORM = ("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
                      "Microsoft.CognitiveServices/accounts/{accountName}/deployments/{deploymentName}")


def invalid(message: str) -> ApiError:
    return errors.arm(400, "InvalidParameter", message)


def _finite(value: Any) -> bool:
    """A JSON number (not a boolean, not NaN or Infinity, which Python's json accepts)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_name(what: str, value: str) -> str:
    """Backend ids, pool names and member ids: what fits in a URL segment and a member key."""
    if not _NAME.match(value):
        raise invalid(f"The {what} '{value}' is invalid. It can only include letters, digits, periods, underscores "
                      "and hyphens, must start with a letter or digit, and has at most 64 characters.")
    return value


def text(body: dict[str, Any], key: str, required: str = "") -> str:
    """A string field ('' when absent or null); `required` names why it may not be empty."""
    value = body.get(key)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise invalid(f"The value of '{key}' must be a string.")
    value = value.strip()
    if not value and required:
        raise invalid(f"The property '{key}' is required {required}.")
    return value


def one_of(body: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = text(body, key, "")
    if value not in allowed:
        raise invalid(f"The value '{value}' of '{key}' is invalid. Valid values are "
                      f"{', '.join(repr(a) for a in allowed)}.")
    return value


def integer(body: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if not _finite(value) or value != int(value) or value < minimum:
        raise invalid(f"The value '{_shown(value)}' of '{key}' is invalid. It must be an integer of at least "
                      f"{minimum}.")
    return int(value)


def number(body: dict[str, Any], key: str, default: float, low: float = 0.0, high: float | None = None,
           above_low: bool = False) -> float:
    """A number in [low, high] (or (low, high] when above_low)."""
    value = body.get(key)
    if value is None:
        return default
    ok = _finite(value)
    if ok:
        ok = (value > low if above_low else value >= low) and (high is None or value <= high)
    if not ok:
        if high is not None:
            rule = f"a number from {_shown(low)} to {_shown(high)}"
        else:
            rule = f"a number above {_shown(low)}" if above_low else f"a number of at least {_shown(low)}"
        raise invalid(f"The value '{_shown(value)}' of '{key}' is invalid. It must be {rule}.")
    return float(value)


def flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"The value '{_shown(value)}' of '{key}' is invalid. It must be true or false.")
    return value


def url(body: dict[str, Any], key: str, kind: str) -> str:
    value = text(body, key, f"for a backend of kind '{kind}'")
    if not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
        raise invalid(f"The value '{value}' of '{key}' is invalid. It must be an absolute http:// or https:// URL.")
    return value.rstrip("/")


def obj(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"The value of '{key}' must be a JSON object.")
    return value


def deployment_parts(value: str, where: str) -> tuple[str, str, str, str]:
    """(subscription, resource group, account, deployment) of a deployment's ARM id;
    ARM's 400 LinkedInvalidPropertyId when it is not one."""
    match = _DEPLOYMENT_ID.match(value)
    if not match:
        raise errors.arm(400, "LinkedInvalidPropertyId",
                         f"Property id '{value}' at path '{where}' is invalid. Expect fully qualified resource Id "
                         f"of a deployment: '{DEPLOYMENT_ID_FORM}'.")
    sub, group, account, deployment = match.groups()
    return sub, group, account, deployment
