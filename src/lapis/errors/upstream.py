"""Errors for failures of the engine behind a deployment (issue 5).

A backend raises lapis.backends.base.UpstreamError; when the balancer has no
member left to try, the data plane answers with one of these. Sources:

    rate_limited  429, §3.3 variant 6 (peak-load shedding): the engine is busy,
                  not the caller's quota
    unavailable   503 ServiceUnavailable, the code the setup guide's
                  troubleshooting names; no captured body is known, so the
                  gateway family with a plain message is Lapis's choice
    timeout       408 {"code":"Timeout","message":"The operation was timeout."}
                  as captured (langgenius/dify-official-plugins#2199)
    unreachable   503, as unavailable: for a client, a dead engine and a
                  refusing one are the same outage
    malformed     500 server_error with the request id (§3.2)
    rejected      400 invalid_request_error carrying the engine's message
"""

from __future__ import annotations

import math

from lapis.errors.base import ApiError, _gateway, _model
from lapis.errors.dataplane import internal_error

__all__ = ["upstream_busy", "service_unavailable", "upstream_timeout", "upstream_rejected", "to_api_error"]


def upstream_busy(retry_after_s: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after_s))
    message = ("The system is currently experiencing high demand and cannot process your request. Your request "
               "exceeds the maximum usage size allowed during peak load. Please retry after "
               f"{seconds} seconds. For improved latency reliability, consider switching to Provisioned Throughput.")
    return _gateway(429, "429", message, {"retry-after": str(seconds), "retry-after-ms": str(seconds * 1000)})


def service_unavailable() -> ApiError:
    return _gateway(503, "ServiceUnavailable",
                    "The service is temporarily unable to process your request. Please try again later.")


def upstream_timeout() -> ApiError:
    return _gateway(408, "Timeout", "The operation was timeout.")


def upstream_rejected(message: str) -> ApiError:
    return _model(400, message, "invalid_request_error", None, None)


def to_api_error(exc: object, request_id: str) -> ApiError:
    """The Azure answer for an UpstreamError (duck-typed: kind, message, retry_after)."""
    kind = getattr(exc, "kind", "")
    if kind == "rate_limited":
        return upstream_busy(getattr(exc, "retry_after", None) or 1)
    if kind in ("unavailable", "unreachable"):
        return service_unavailable()
    if kind == "timeout":
        return upstream_timeout()
    if kind == "rejected":
        return upstream_rejected(getattr(exc, "message", "") or "The request was rejected by the model.")
    return internal_error(request_id)
