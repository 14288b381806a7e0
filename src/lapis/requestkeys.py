"""Typed keys for what a request carries between middleware and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from lapis.dataplane.admission import Admission
    from lapis.dataplane.directory import AccountEntry, DeploymentEntry

REQUEST_ID = web.RequestKey("request_id", str)
REGION = web.RequestKey("region", str)  # display name, for x-ms-region
DEPLOYMENT: "web.RequestKey[DeploymentEntry]" = web.RequestKey("deployment", Any)  # type: ignore[arg-type]
ADMISSION: "web.RequestKey[Admission]" = web.RequestKey("admission", Any)  # type: ignore[arg-type]
ACCOUNT: "web.RequestKey[AccountEntry]" = web.RequestKey("account", Any)  # type: ignore[arg-type]
CALLER = web.RequestKey("caller", str)  # key1 | key2 | principal object id
USAGE = web.RequestKey("usage", tuple)  # (prompt, completion, cached) tokens
SERVED = web.RequestKey("served", tuple)  # (member name, location) of the engine that answered
FIRST_BYTE = web.RequestKey("first_byte", float)  # loop time the status line went out
STARTED = web.RequestKey("started", float)  # loop time the request arrived
ERROR_CODE = web.RequestKey("error_code", str)  # Azure error code of the answer, when it was an error
SPILLED_FROM = web.RequestKey("spilled_from", str)  # the deployment whose 429 sent this one to its spillover
CONTENT = web.RequestKey("content", dict)  # prompt and response text, only when a diagnostic setting asks
