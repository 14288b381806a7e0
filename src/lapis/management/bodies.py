"""Reading ARM request bodies: JSON objects, or ARM's 400 when they are not."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lapis.errors import catalogue as errors


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise errors.arm_bad_request(f"The request content was invalid and could not be deserialized: '{exc}'.")
    if not isinstance(body, dict):
        raise errors.arm_bad_request("The request content was invalid and could not be deserialized: "
                                     "'expected a JSON object'.")
    return body
