"""Build the RequestRecord of one finished data-plane request (see record.py)."""

from __future__ import annotations

import time

from aiohttp import web

from lapis.dataplane.admission import OPERATION_IDS
from lapis.observe.record import RequestRecord
from lapis.requestkeys import state_of

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
    state = state_of(request)
    started = now if state.started is None else state.started
    first = now if state.first_byte is None else state.first_byte
    operation = operation_of(request.path)
    account, dep, usage = state.account, state.deployment, state.usage
    prompt, completion, cached = usage if usage is not None else (0, 0, 0)
    if account is not None:
        account_id, account_name, arm_id = account.id, account.name, account.arm_id
        subscription, group, location, tags = account.subscription_id, account.resource_group, account.location, \
            account.tags
    else:
        account_id = account_name = arm_id = subscription = group = location = ""
        tags = _NO_TAGS
    if dep is not None:
        deployment, model, version, sku = dep.name, dep.model.name, dep.version.version, dep.sku
        limit = dep.limits.tokens
    else:
        deployment = model = version = sku = ""
        limit = 0
    # who answered: the engine the balancer names, else the deployment itself in its account's region
    served_by, served_region = state.served or ((deployment, location) if dep is not None else ("", ""))
    return RequestRecord(  # every field, in RequestRecord's order
        time.time() - (now - started), state.request_id, operation, OPERATION_NAMES[operation],
        request.query.get("api-version", ""), status, streaming, (now - started) * 1000.0, (first - started) * 1000.0,
        state.caller, request.remote or "", account_id, account_name, arm_id, subscription, group, location, tags,
        deployment, model, version, sku, prompt, completion, cached, served_by, served_region, error_code,
        state.content, limit)


_NO_TAGS: dict[str, str] = {}  # shared by records of no account: never written to
