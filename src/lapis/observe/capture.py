"""Build the RequestRecord of one finished data-plane request (see record.py)."""

from __future__ import annotations

import time

from aiohttp import web

from lapis.dataplane.admission import OPERATION_IDS
from lapis.observe.record import RequestRecord
from lapis.requestkeys import ACCOUNT, CALLER, CONTENT, DEPLOYMENT, FIRST_BYTE, REQUEST_ID, SERVED, STARTED, USAGE

OPERATION_NAMES = {**OPERATION_IDS, "models": "Models_List"}  # Azure's operation ids


def operation_of(path: str) -> str:
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/completions"):
        return "completions"
    if path.endswith("/embeddings"):
        return "embeddings"
    return "models"


def record_for(request: web.Request, status: int, error_code: str, streaming: bool, now: float) -> RequestRecord:
    """`now` is the loop time at the end of the request."""
    started = request.get(STARTED, now)
    first = request.get(FIRST_BYTE, now)
    operation = operation_of(request.path)
    record = RequestRecord(
        time=time.time() - (now - started), request_id=request.get(REQUEST_ID, ""), operation=operation,
        operation_name=OPERATION_NAMES[operation], api_version=request.query.get("api-version", ""),
        status=status, streaming=streaming, duration_ms=(now - started) * 1000.0,
        ttfb_ms=(first - started) * 1000.0, caller=request.get(CALLER, ""), caller_ip=request.remote or "",
        error_code=error_code, content=request.get(CONTENT),
    )
    account = request.get(ACCOUNT)
    if account is not None:
        record.account_id = account.id
        record.account_name = account.name
        record.account_arm_id = account.arm_id
        record.subscription_id = account.subscription_id
        record.resource_group = account.resource_group
        record.location = account.location
        record.tags = account.tags
    dep = request.get(DEPLOYMENT)
    if dep is not None:
        record.deployment = dep.name
        record.model = dep.model.name
        record.model_version = dep.version.version
        record.sku = dep.sku
        record.served_by = dep.name
        record.served_region = record.location
    usage = request.get(USAGE)
    if usage is not None:
        record.prompt_tokens, record.completion_tokens, record.cached_tokens = usage
    served = request.get(SERVED)
    if served is not None:
        record.served_by, record.served_region = served
    return record
