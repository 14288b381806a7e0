"""The one record every data-plane request leaves behind, and who hears of it.

The envelope middleware (lapis.app) builds a RequestRecord when a data-plane
request ends (after the last byte of a stream) and hands it to each observer
in `Observers`. Observers are synchronous and must not block: metrics update
counters, usage and log sinks put the record on a bounded queue and return.
A failing observer is logged and never fails the request.

What the handlers leave on the request's state for it (lapis.requestkeys.RequestState):
    account     the AccountEntry once the account is known
    deployment  the DeploymentEntry once the deployment is known
    caller      "key1" / "key2" for keys, the principal's object id for tokens
    usage       (prompt_tokens, completion_tokens, cached_tokens) when the model ran
    served      (member name, location) of the engine that answered
    first_byte  loop time the status line went out (lapis.tracing.stamp)
    content     prompt and response text, only when a diagnostic setting of the
                account asks for it (lapis.diagnostics.content); None otherwise
"""

from __future__ import annotations

import logging
from typing import Callable

import msgspec

log = logging.getLogger("lapis.observe")


class RequestRecord(msgspec.Struct, array_like=True):
    """array_like: encoded as an array, not a map (lapis.observe.spool writes one per request:
    half the bytes and half the encoding time of a map). New fields go at the end, with a default."""

    time: float  # epoch seconds when the request arrived
    request_id: str
    operation: str  # chat | completions | embeddings | models
    operation_name: str  # Azure's operation id, e.g. ChatCompletions_Create
    api_version: str  # as sent, "" when absent
    status: int
    streaming: bool
    duration_ms: float  # arrival to last byte
    ttfb_ms: float  # arrival to status line
    caller: str = ""  # key1 | key2 | principal object id | "" (not authenticated)
    caller_ip: str = ""
    account_id: str = ""
    account_name: str = ""
    account_arm_id: str = ""  # /subscriptions/{sub}/resourceGroups/{rg}/providers/.../accounts/{name}
    subscription_id: str = ""
    resource_group: str = ""
    location: str = ""  # the account's region, e.g. eastus
    tags: dict[str, str] = msgspec.field(default_factory=dict)  # the account's tags
    deployment: str = ""
    model: str = ""
    model_version: str = ""
    sku: str = ""  # Standard | GlobalStandard | ProvisionedManaged | ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    served_by: str = ""  # the deployment or member that answered (x-ms-deployment-name)
    served_region: str = ""  # the location whose engine answered
    error_code: str = ""  # Azure error code when status >= 400
    content: dict[str, str] | None = None  # requestContent / responseContent JSON text (lapis.diagnostics.content)
    tokens_per_minute: int = 0  # the deployment's quota (provisioned utilization is measured against it)


Observer = Callable[[RequestRecord], None]


class Observers:
    """The listeners; `add` at start-up, `emit` from the middleware."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self.any = False  # an attribute, not __bool__: the envelope asks on every request

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)
        self.any = True

    def __bool__(self) -> bool:
        return self.any

    def emit(self, record: RequestRecord) -> None:
        for observer in self._observers:
            try:
                observer(record)
            except Exception:  # noqa: BLE001 - observing must never fail a request
                log.exception("observer %r failed", observer)
