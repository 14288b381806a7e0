"""Prompt and response text in diagnostic logs: opt-in, captured cheaply, sealed at rest.

Lapis never logs what callers send or receive unless a diagnostic setting of
their account asks for it with `"lapisIncludeContent": true` on an enabled
log entry covering RequestResponse (lapis.diagnostics.settings).

Capture, from the data plane's handlers (three calls, all but free when no
setting asks):

    capture(request, services, body, field)   after the body is decoded: the
        messages (chat), prompt (completions) or input (embeddings) as sent;
        it asks `services.diagnostics.wants_content(account id)`, one set
        lookup, and does nothing else when no setting wants text
    answered(request, choices, text=False)    a non-streamed answer's choices
    streamed(request, pieces, calls, text)    a stream's end, however it ended:
        the text and tool calls actually sent to the client

What was kept rides on the request (its RequestState.content), then on the
RequestRecord (`content`), then in the RequestResponse record's properties
of the settings that asked (only those):

    requestContent    JSON text: the messages, prompt or input, as the caller sent them
    responseContent   JSON text, one entry per choice: the assistant message
                      {"role", "content", "tool_calls"?} (chat) or the text (completions);
                      absent for embeddings (vectors are not text)

At rest (workspace and storage files): each value is sealed under the
account's data key `acct-<id>` (lapis.crypto.keyring), bound to the context
`diagnostics.<property>:<request id>`, by the sink's writer (`data_keys` then
`sealed`, off the request path: the observer only queues the record, in
memory). When the key cannot be had at write time (the account's
customer-managed key is disabled, or the account was deleted meanwhile) the
value is written as NOT_SEALED, never in the clear. So a scan of LAPIS_HOME
finds no prompt, and deleting the account (which deletes its data key)
leaves its logged text unreadable for good.

Leaving Lapis (webhook, event hub, OTLP): the plaintext goes over the wire
to the destination the admin configured. A receiver cannot open Lapis's
sealed values (data keys never leave Lapis), so sealed text would be useless
to it; the destination's own protection applies, as it does for Azure's own
diagnostic destinations. (The event hub stand-in is a Redis server, outside
LAPIS_HOME.)

Reading (the workspace query API, `lapis monitor log-analytics query`): the
workspace files open each row's values (Opener) before the query's clauses
run, so `where requestContent_s contains 'x'` works; whoever the query API
admits (the admin, or a principal allowed to read there, as Azure's Reader
reads Log Analytics) reads plaintext. A value whose key is unavailable reads
KEY_UNAVAILABLE; one whose key was deleted with its account, or that was
altered, reads UNREADABLE. Nothing fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Iterable, Sequence

import msgspec
from aiohttp import web

from lapis.crypto import envelope
from lapis.crypto.envelope import SealedValueError
from lapis.crypto.keyring import KeyUnavailable, account_key_id
from lapis.requestkeys import state_of

log = logging.getLogger("lapis.diagnostics")
REQUEST = "requestContent"
RESPONSE = "responseContent"
FIELDS = (REQUEST, RESPONSE)
COLUMNS = tuple(f"{name}_s" for name in FIELDS)  # their Log Analytics columns (lapis.diagnostics.shaping)
KEY_UNAVAILABLE = "[encrypted: key unavailable]"
UNREADABLE = "[encrypted: unreadable, its key was deleted]"
NOT_SEALED = "[not logged: the account's key was unavailable]"
_encode = msgspec.json.encode


def _json(value: Any) -> str:
    return _encode(value).decode()


# -- capture (the data plane) ------------------------------------------------------

def capture(request: web.Request, services: Any, body: bytes, field: str) -> None:
    """Keep the body's `field` when a setting of the request's account asks for text."""
    diagnostics = services.diagnostics
    if diagnostics is None or not diagnostics.wants_content(state_of(request).account.id):
        return
    try:
        value = msgspec.json.decode(body).get(field)
    except (msgspec.DecodeError, AttributeError):
        return
    state_of(request).content = {REQUEST: _json(value)}


def answered(request: web.Request, choices: Sequence[Any], text: bool = False) -> None:
    """Keep a non-streamed answer's text, when capture() kept its request."""
    captured = state_of(request).content
    if captured is not None:
        captured[RESPONSE] = _json(_choices(choices, text))


def streamed(request: web.Request, pieces: dict[int, list[str]], calls: dict[int, list[Any]], text: bool) -> None:
    """Keep what a stream sent, per choice index, when capture() kept its request."""
    captured = state_of(request).content
    if captured is None:
        return
    out = []
    for index in sorted(set(pieces) | set(calls)):
        joined = "".join(pieces.get(index, []))
        out.append(joined if text else _message(joined or None, _merged(calls.get(index, []))))
    captured[RESPONSE] = _json(out)


def _choices(choices: Sequence[Any], text: bool) -> list[Any]:
    if text:
        return [c.content or "" for c in choices]
    return [_message(c.content, list(c.tool_calls)) for c in choices]


def _message(content: str | None, calls: list[Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
    return message


def _merged(calls: list[Any]) -> list[Any]:
    """A relayed stream may send one tool call in fragments (same id, or no name after the first)."""
    out: list[Any] = []
    for call in calls:
        if out and (call.id == out[-1].id or not call.name):
            last = out[-1]
            out[-1] = last.__class__(last.id, last.name or call.name, last.arguments + call.arguments)
        else:
            out.append(call)
    return out


# -- records -------------------------------------------------------------------------

class ContentLog(dict):
    """A RequestResponse record whose properties hold text in the clear (in memory only);
    `account_id` names the data key that seals it in the file sinks."""

    __slots__ = ("account_id",)


def with_content(log_record: dict[str, Any], account_id: str, texts: dict[str, str]) -> ContentLog:
    item = ContentLog(log_record)
    item["properties"] = {**log_record["properties"], **texts}
    item.account_id = account_id
    return item


def context(field: str, request_id: str) -> str:
    return f"diagnostics.{field}:{request_id}"


# -- sealing (the file sinks' writers) ---------------------------------------------------

async def data_keys(keyring: Any, records: Iterable[dict[str, Any]]) -> dict[str, bytes | None]:
    """account id -> its data key (None when unavailable or deleted), for the records holding text."""
    keys: dict[str, bytes | None] = {}
    for record in records:
        if isinstance(record, ContentLog) and record.account_id not in keys:
            keys[record.account_id] = None
            if keyring is not None:
                try:
                    keys[record.account_id] = await keyring.data_key(account_key_id(record.account_id))
                except (KeyUnavailable, SealedValueError):
                    pass
    return keys


def sealed(records: list[dict[str, Any]], keys: dict[str, bytes | None]) -> list[dict[str, Any]]:
    """The records as they may be written: text sealed (or NOT_SEALED), never in the clear; copies,
    as the same record may wait on other sinks' queues."""
    if not keys:
        return records
    out = []
    for record in records:
        if isinstance(record, ContentLog):
            key, key_id = keys.get(record.account_id), account_key_id(record.account_id)
            props = dict(record["properties"])
            for field in FIELDS:
                if field in props:
                    props[field] = (envelope.seal(key, key_id, props[field], context(field, record["correlationId"]))
                                    if key is not None else NOT_SEALED)
            record = {**record, "properties": props}
        out.append(record)
    return out


# -- opening (the workspace query) ----------------------------------------------------------

class Opener:
    """Opens sealed text in workspace rows. Rows are read in a worker thread (the query must not
    stall the event loop), so data keys are fetched on the loop and waited for here; rows read on
    the loop's own thread stay sealed (blocking there would deadlock)."""

    def __init__(self, keyring: Any):
        self.keyring = keyring
        self.loop: asyncio.AbstractEventLoop | None = None  # set by Diagnostics.start

    def reader(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """A row opener for one query: each data key is fetched once."""
        try:
            asyncio.get_running_loop()
            return _as_is  # on the loop's own thread: cannot wait for the store here
        except RuntimeError:
            pass
        keys: dict[str, bytes | str] = {}  # key id -> key, or the placeholder its values read as

        def open_value(value: Any, field: str, request_id: str) -> Any:
            if not envelope.is_sealed(value):
                return value
            try:
                key_id = envelope.key_id_of(value)
            except SealedValueError:
                return UNREADABLE
            if key_id not in keys:
                keys[key_id] = self._key(key_id)
            key = keys[key_id]
            if isinstance(key, str):
                return key
            try:
                return envelope.open_text(key, value, context(field, request_id))
            except SealedValueError:
                return UNREADABLE

        def open_row(row: dict[str, Any]) -> dict[str, Any]:
            if COLUMNS[0] not in row and COLUMNS[1] not in row:
                return row
            request_id = str(row.get("CorrelationId", ""))
            for field, column in zip(FIELDS, COLUMNS):
                if column in row:
                    row[column] = open_value(row[column], field, request_id)
            try:
                props = json.loads(row.get("properties_s") or "{}")
            except ValueError:
                return row
            if isinstance(props, dict):
                for field in FIELDS:
                    if field in props:
                        props[field] = open_value(props[field], field, request_id)
                row["properties_s"] = json.dumps(props, separators=(",", ":"))
            return row

        return open_row

    def _key(self, key_id: str) -> bytes | str:
        if not key_id.startswith("acct-") or self.keyring is None or self.loop is None:
            return UNREADABLE
        try:
            return asyncio.run_coroutine_threadsafe(self.keyring.data_key(key_id), self.loop).result(timeout=30)
        except KeyUnavailable:
            return KEY_UNAVAILABLE
        except SealedValueError:
            return UNREADABLE
        except Exception as failure:  # noqa: BLE001 - a query never fails on a key it cannot fetch
            log.warning("diagnostics: could not fetch data key %s to open logged text (%r)", key_id, failure)
            return KEY_UNAVAILABLE


def _as_is(row: dict[str, Any]) -> dict[str, Any]:
    return row
