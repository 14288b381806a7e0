"""The error value and the three body families every catalogue module builds on."""

from __future__ import annotations

import json
from typing import Any, Mapping

class ApiError(Exception):
    """An error answer: status, exact body bytes and extra headers."""

    __slots__ = ("status", "body", "headers", "code")

    def __init__(self, status: int, body: bytes, code: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code}")
        self.status = status
        self.body = body
        self.code = code
        self.headers = dict(headers or {})

    def json(self) -> Any:
        return json.loads(self.body)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _gateway(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> ApiError:
    """Azure's resource-level family: only code and message (§3.1 family 1)."""
    return ApiError(status, _dump({"error": {"code": code, "message": message}}), code, headers)


def _model(status: int, message: str, type_: str | None, param: str | None, code: str | None) -> ApiError:
    """The OpenAI-style family: message, type, param, code, nulls kept (§3.1 family 2)."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return ApiError(status, _dump(body), code or type_ or str(status))



def arm(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None) -> ApiError:
    """ARM's common ErrorResponse envelope."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return ApiError(status, _dump({"error": error}), code, headers)
