"""Typed keys for what a request carries between middleware and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from lapis.dataplane.admission import Admission
    from lapis.dataplane.directory import DeploymentEntry

REQUEST_ID = web.RequestKey("request_id", str)
REGION = web.RequestKey("region", str)  # display name, for x-ms-region
DEPLOYMENT: "web.RequestKey[DeploymentEntry]" = web.RequestKey("deployment", Any)  # type: ignore[arg-type]
ADMISSION: "web.RequestKey[Admission]" = web.RequestKey("admission", Any)  # type: ignore[arg-type]
