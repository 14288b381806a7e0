"""Stencils: a request's RequestResponse or Trace record, and its workspace row, as JSON, cheaply.

Shaping (lapis.diagnostics.shaping) builds a record's dict, then its
workspace row's dict, and the sinks encode both; for two requests that
differ only in what changes with every request (its time, id, duration,
token counts, ...) most of that work gives the same bytes. A stencil is
those bytes with holes, one for the record and one for the row: made once
for each combination of everything else (account, operation, status,
caller, api-version, deployment, model, ...: every RequestRecord field not
in PER_REQUEST), by shaping one request through the generic path with
markers in the holes and finding the markers in the encoded JSON. Each
request's JSON is then its stencil with the request's own values
%-formatted in (`fill`), the same bytes the generic path writes.

The holes, wherever the generic path writes them: `time`, `correlationId`,
`callerIpAddress` and `durationMs` in the record and in the row's columns;
`requestTime`, `responseTime`, `timeToFirstByteMs`, `promptTokens`,
`completionTokens`, `cachedTokens` in the record's properties, in the row's
properties_s text, and in the row's typed columns (as floats there).

What keeps it honest:
- a stencil is kept only if, filled with the values of the request it was
  made from, it gives exactly the generic path's bytes for both the record
  and the row; else that combination keeps the generic path;
- the key is read from the dataclass's fields, so a field that shaping
  starts to use is in the key without a change here (a field of a type that
  cannot be a key, like the tags dict, must not be used by shaping:
  tests/unit/test_diagnostics_stencils.py varies every field to check);
- only requests whose per-request values have the types the holes take
  (int token counts, a float time to first byte) use a stencil;
- a combination gets its stencil the second time it is seen, and at most
  CAPACITY are kept (then all are forgotten and made again), so requests
  that never repeat (a made-up api-version, say) never pay for one.
"""

from __future__ import annotations

import re
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
from msgspec.structs import fields

from lapis.diagnostics.shaping import iso, mask_ip, request_log, ticks, workspace_row
from lapis.observe.record import RequestRecord

PER_REQUEST = ("time", "request_id", "caller_ip", "duration_ms", "ttfb_ms", "prompt_tokens", "completion_tokens",
               "cached_tokens")
UNKEYED = (*PER_REQUEST, "tags", "content")  # content: records with text never use a stencil
KEY_FIELDS = tuple(f.name for f in fields(RequestRecord) if f.name not in UNKEYED)
CAPACITY = 1024
_key_of = attrgetter(*KEY_FIELDS)
_encode = msgspec.json.Encoder().encode

# The markers: text holes by name; number holes by a value no real field holds, an int written as
# itself (and as a float, NNN.0, in the row's typed columns) or, for the time to first byte, a float.
_TEXTS = ("time", "correlationId", "callerIpAddress")  # slots 0, 1, 2
_INTS = {"durationMs": 987_002, "requestTime": 987_003, "responseTime": 987_004, "promptTokens": 987_005,
         "completionTokens": 987_006, "cachedTokens": 987_007}
_TTFB = 987_001.5
_SLOTS = {b"987002": 3, b"987003": 4, b"987003.0": 5, b"987004": 6, b"987004.0": 7, b"987001.5": 8,
          b"987005": 9, b"987005.0": 10, b"987006": 11, b"987006.0": 12, b"987007": 13, b"987007.0": 14}
_MARKS = re.compile(rb'"@@lapis:(time|correlationId|callerIpAddress)@@"'
                    rb'|(?<=:)(987001\.5|98700[2-7](?:\.0)?)(?=[,}])')
_SEEN = object()  # a kind of request seen once: no stencil yet
_NEVER = object()  # a kind of request whose stencil did not reproduce the generic path


class Stencil:
    """The JSON of one record (or row) with holes; `fill(values)` puts a request's values in."""

    __slots__ = ("template", "pick")

    def __init__(self, encoded: bytes):
        pieces, slots, at = [], [], 0
        for found in _MARKS.finditer(encoded):
            pieces.append(encoded[at:found.start()].replace(b"%", b"%%"))
            slots.append(_TEXTS.index(found.group(1).decode()) if found.group(1) else _SLOTS[found.group(2)])
            at = found.end()
        pieces.append(encoded[at:].replace(b"%", b"%%"))
        if len(slots) < 2:
            raise ValueError("a stencil with fewer than two holes")  # itemgetter would not give a tuple
        self.template = b"%b".join(pieces)
        self.pick = itemgetter(*slots)

    def fill(self, values: tuple[bytes, ...]) -> bytes:
        return self.template % self.pick(values)


def values(request: RequestRecord) -> tuple[bytes, ...] | None:
    """The request's own values, encoded, in slot order; None when their types are not the holes'."""
    prompt, completion, cached, ttfb = (request.prompt_tokens, request.completion_tokens, request.cached_tokens,
                                        request.ttfb_ms)
    if type(prompt) is not int or type(completion) is not int or type(cached) is not int or type(ttfb) is not float:
        return None
    started, duration = request.time, request.duration_ms
    asked, answered = ticks(started), ticks(started + duration / 1000.0)
    return (_encode(iso(started)), _encode(request.request_id), _encode(mask_ip(request.caller_ip)),
            b"%d" % int(round(duration)), b"%d" % asked, _encode(float(asked)), b"%d" % answered,
            _encode(float(answered)), _encode(round(ttfb, 3)), b"%d" % prompt, _encode(float(prompt)),
            b"%d" % completion, _encode(float(completion)), b"%d" % cached, _encode(float(cached)))


def generic(request: RequestRecord, category: str) -> tuple[bytes, bytes]:
    """The record's and its row's JSON the long way (what a stencil must reproduce)."""
    shaped = request_log(request, category)
    return _encode(shaped), _encode(workspace_row(shaped)[1])


def _marked(request: RequestRecord, category: str) -> tuple[bytes, bytes]:
    shaped = request_log(request, category)
    shaped.update({name: f"@@lapis:{name}@@" for name in _TEXTS})
    shaped["durationMs"] = _INTS["durationMs"]
    props = shaped["properties"]
    props.update({name: mark for name, mark in _INTS.items() if name != "durationMs"})
    props["timeToFirstByteMs"] = _TTFB
    return _encode(shaped), _encode(workspace_row(shaped)[1])


class Stencils:
    """The stencils made so far: (category, the request's key fields) -> (record stencil, row stencil)."""

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.made: dict[tuple[Any, ...], Any] = {}  # -> (Stencil, Stencil), _SEEN or _NEVER

    def get(self, request: RequestRecord, category: str, own: tuple[bytes, ...]) -> tuple[Stencil, Stencil] | None:
        """The request's stencils, made now if this is the second time its kind is seen (`own`: its
        values); None: the long way."""
        try:
            key = (category, _key_of(request))
            found = self.made.get(key)
        except TypeError:  # a field that cannot be part of a key: no stencil
            return None
        if type(found) is tuple:
            return found
        if found is None:
            if len(self.made) >= self.capacity:
                self.made.clear()
            self.made[key] = _SEEN
            return None
        if found is _NEVER:
            return None
        made: Any = _NEVER
        try:
            record, row = (Stencil(encoded) for encoded in _marked(request, category))
            if (record.fill(own), row.fill(own)) == generic(request, category):
                made = (record, row)
        except Exception:  # noqa: BLE001 - whatever goes wrong, this kind of request goes the long way
            made = _NEVER
        self.made[key] = made
        return made if made is not _NEVER else None
