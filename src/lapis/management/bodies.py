"""Reading ARM request bodies: JSON objects, or ARM's 400 when they are not."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lapis.errors import catalogue as errors


def json_object(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(the body as an object, "") or (None, why it is not one); an empty body is {}."""
    if not raw.strip():
        return {}, ""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return None, str(exc)
    return (body, "") if isinstance(body, dict) else (None, "expected a JSON object")


async def read_json(request: web.Request) -> dict[str, Any]:
    body, why = json_object(await request.read())
    if body is None:
        raise errors.arm_bad_request(f"The request content was invalid and could not be deserialized: '{why}'.")
    return body
