"""Pending: a data-plane request on the sinks' queues, shaped only when a sink takes it.

The dispatcher's observer (lapis.diagnostics.dispatcher) queues one Pending per
request and category, the same object on every queue the record goes to, and
returns: nothing is shaped on the request path. Each queue's task turns its
batch into what its sink writes (SinkQueue's `prepare`), and what one sink
made, the next one reuses:

    records(batch)     the records as dicts (lapis.diagnostics.shaping): the
                       webhook, OTLP and storage sinks
    for_event_hub      each Pending's record as JSON bytes (`json()`): the Event Hubs sink
    for_workspace      each Pending's workspace row as JSON bytes (`row()`): the
                       Log Analytics workspace sink

RequestResponse and Trace records without text come from stencils
(lapis.diagnostics.stencils), byte for byte what shaping and encoding them
would give; Audit records and records carrying text are shaped the long
way. Everything else on a queue (management Audit records, metric records)
is a dict already and passes as it is. An item that cannot be made is
logged and left out; the queue counts it dropped.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import msgspec

from lapis.auth.actions import CHAT, COMPLETIONS, EMBEDDINGS, MODELS_LIST
from lapis.diagnostics import content
from lapis.diagnostics.shaping import denial_audit_log, request_log
from lapis.diagnostics.stencils import Stencils, values
from lapis.observe.record import RequestRecord

log = logging.getLogger("lapis.diagnostics")
DATA_ACTIONS = {"chat": CHAT.action, "completions": COMPLETIONS.action, "embeddings": EMBEDDINGS.action,
                "models": MODELS_LIST.action}
_encode = msgspec.json.Encoder().encode
_NONE = object()  # not worked out yet


class Pending:
    """One data-plane request in one category, as it was queued."""

    __slots__ = ("request", "category", "text", "stencils", "_record", "_json", "_row", "_made")

    def __init__(self, request: RequestRecord, category: str, text: bool, stencils: Stencils | None = None):
        self.request = request
        self.category = category
        self.text = text  # the record carries the request's text (a setting asked)
        self.stencils = stencils
        self._record: dict[str, Any] | None = None
        self._json: bytes | None = None
        self._row: bytes | None = None
        self._made: Any = _NONE  # (stencils, values) or None: the long way

    def record(self) -> dict[str, Any]:
        """The record (a ContentLog when it carries text)."""
        if self._record is None:
            request = self.request
            if self.category == "Audit":
                shaped = denial_audit_log(request, DATA_ACTIONS.get(request.operation, ""))
            else:
                shaped = request_log(request, self.category)
            if self.text:
                shaped = content.with_content(shaped, request.account_id, request.content or {})
            self._record = shaped
        return self._record

    def _stencilled(self) -> Any:
        if self._made is _NONE:
            self._made = None
            if self.stencils is not None and not self.text and self.category != "Audit":
                own = values(self.request)
                found = self.stencils.get(self.request, self.category, own) if own is not None else None
                if found is not None:
                    self._made = (found, own)
        return self._made

    def json(self) -> bytes:
        """The record's JSON."""
        if self._json is None:
            made = self._stencilled()
            self._json = made[0][0].fill(made[1]) if made is not None else _encode(self.record())
        return self._json

    def row(self) -> bytes | None:
        """Its workspace row's JSON; None when it carries text (the row is made from the sealed record)."""
        if self._row is None:
            made = self._stencilled()
            if made is None:
                return None
            self._row = made[0][1].fill(made[1])
        return self._row


def _failed(item: Pending) -> None:
    log.exception("diagnostics: could not shape the %s record of request %s", item.category, item.request.request_id)


def _each(batch: list[Any], make: Callable[[Pending], Any]) -> list[Any]:
    """The batch with each Pending replaced by make(item); one that cannot be
    shaped is logged and left out (it must not stop its sink), others pass as they are."""
    out = []
    for item in batch:
        if type(item) is Pending:
            try:
                item = make(item)
            except Exception:  # noqa: BLE001 - a record that cannot be shaped must not stop its sink
                _failed(item)
                continue
        out.append(item)
    return out


def _with_json(item: Pending) -> Pending:
    item.json()
    return item


def _row_or_record(item: Pending) -> Any:
    return item if item.row() is not None else item.record()


def records(batch: list[Any]) -> list[dict[str, Any]]:
    """The batch as records (dicts)."""
    return _each(batch, Pending.record)


def for_event_hub(batch: list[Any]) -> list[Any]:
    """The batch with each Pending's JSON made (`json()` then answers at once)."""
    return _each(batch, _with_json)


def for_workspace(batch: list[Any]) -> list[Any]:
    """The batch with each Pending's row made from its stencil, or else as its record (a dict)."""
    return _each(batch, _row_or_record)
