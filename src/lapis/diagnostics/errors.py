"""Microsoft.Insights errors: the flat body `{"code": ..., "message": ...}`.

Azure Monitor's resource provider answers without ARM's `error` wrapper (its
spec's ErrorResponse, and captures such as `{"code":"BadRequest","message":
"CategoryGroup: 'allLogs' is not supported, supported ones are: ''"}`).
Azure's wording where a capture exists; Lapis's own where none does (marked).
"""

from __future__ import annotations

from typing import Iterable

from lapis.errors.base import ApiError, _dump


def insights(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, _dump({"code": code, "message": message}), code)


def bad_request(message: str) -> ApiError:
    return insights(400, "BadRequest", message)


def setting_not_found(name: str) -> ApiError:
    """Captured: `(ResourceNotFound) The diagnostic setting 'X' doesn't exist.`"""
    return insights(404, "ResourceNotFound", f"The diagnostic setting '{name}' doesn't exist.")


def category_not_supported(category: str) -> ApiError:
    """Captured: `Category 'WorkflowRuntime' is not supported.`"""
    return bad_request(f"Category '{category}' is not supported.")


def category_group_not_supported(group: str, supported: Iterable[str]) -> ApiError:
    listed = ",".join(f"'{g}'" for g in supported)
    return bad_request(f"CategoryGroup: '{group}' is not supported, supported ones are: {listed}")


def metric_category_not_supported(category: str) -> ApiError:
    """Captured: `Metric category 'X' is not supported, supported categories are: 'AllMetrics'`."""
    return bad_request(f"Metric category '{category}' is not supported, supported categories are: 'AllMetrics'")


def invalid_query(message: str, inner: str = "SyntaxError") -> ApiError:
    """Log Analytics' query error envelope (its API, not ARM's); `inner` is SyntaxError or SemanticError."""
    body = {"error": {"message": "The request had some invalid properties", "code": "BadArgumentError",
                      "innererror": {"code": inner, "message": message}}}
    return ApiError(400, _dump(body), "BadArgumentError")
