"""An incremental server-sent-events decoder for upstream streams.

Bytes go in as the network hands them over (any split, even mid-line or
mid-UTF-8 character); the `data` of each complete event comes out as bytes,
ready for msgspec. Rules kept from the WHATWG event-stream format: lines end
in LF or CRLF, a blank line ends an event, several `data:` lines join with
LF, one space after the colon is dropped, comment lines (`:` first, used as
keep-alives) and other fields (`event`, `id`, `retry`) are ignored.

One leniency: at end of stream an event still pending (no blank line after
its last `data:` line) is delivered rather than dropped, because some engines
end with `data: [DONE]\\n` and nothing after it.
"""

from __future__ import annotations

__all__ = ["SSEDecoder", "EventTooLarge"]

MAX_EVENT_BYTES = 16 * 1024 * 1024  # a line or event larger than this is not a chat chunk


class EventTooLarge(ValueError):
    """The stream kept sending bytes without ending a line or an event."""


class SSEDecoder:
    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._partial = b""  # an unfinished line
        self._data: list[bytes] = []  # data lines of the event being read
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event that `chunk` completes, in order."""
        buffer = self._partial + chunk if self._partial else chunk
        lines = buffer.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self._max:
            raise EventTooLarge(f"an event-stream line exceeded {self._max} bytes")
        events: list[bytes] = []
        for line in lines:
            self._line(line[:-1] if line.endswith(b"\r") else line, events)
        return events

    def close(self) -> list[bytes]:
        """End of stream: the unfinished line and event, if any (see above)."""
        events: list[bytes] = []
        if self._partial:
            self._line(self._partial.rstrip(b"\r"), events)
            self._partial = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if not line:
            if self._data:
                events.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                self._data, self._size = [], 0
            return
        if line.startswith(b"data:"):
            value = line[6:] if line.startswith(b"data: ") else line[5:]
            self._size += len(value)
            if self._size > self._max:
                raise EventTooLarge(f"an event exceeded {self._max} bytes")
            self._data.append(value)
        # a line without "data:" (comment or other field) carries nothing for us
