"""Turning an engine's chat.completion.chunk events into Deltas, one event at a time.

Content is passed on as soon as its chunk arrives. Tool calls are the one
thing held back: OpenAI streams them as fragments keyed by a tool index
(id and name in the first fragment, the arguments spread over the next ones),
but a Delta's ToolCall has no index, and the data plane numbers the tool
calls of one Delta by their position in it (dataplane/responses.py). Passing
fragments on would give every fragment index 0 and an empty id/name, which
merges parallel calls into one garbled call in every client that joins
fragments by index. So the fragments of a choice are joined here and its
calls go out whole, in one Delta, just before that choice's finish Delta.

End of stream (`StreamState.end`):

* after `data: [DONE]`: every choice that started and did not finish gets
  a finish Delta ("tool_calls" if it has calls, else "stop"): the engine said
  it was done;
* at end of body without [DONE]: fine if at least one choice finished and
  none is left open (some engines omit [DONE]); otherwise the stream was cut
  short and UpstreamError("malformed") is raised;
* the engine's usage, when it sent any (the last one wins: some engines send
  it on every chunk), comes last.
"""

from __future__ import annotations

from lapis.backends.base import Delta, ToolCall, UpstreamError, Usage
from lapis.backends.openai_wire import ToolFragment, arguments_text, decode_chunk, tool_call, usage_of

__all__ = ["StreamState", "DONE"]

DONE = b"[DONE]"


class _PendingCall:
    __slots__ = ("id", "name", "arguments")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class StreamState:
    def __init__(self) -> None:
        self.done = False  # [DONE] was seen
        self.usage: Usage | None = None
        self._open: set[int] = set()  # choices seen and not finished
        self._finished: set[int] = set()
        self._calls: dict[int, dict[int, _PendingCall]] = {}  # choice -> tool index -> call

    def feed(self, payload: bytes) -> list[Delta]:
        """The Deltas one event's data gives (often one, sometimes none)."""
        if payload == DONE:
            self.done = True
            return []
        chunk = decode_chunk(payload)
        out: list[Delta] = []
        for choice in chunk.choices:
            index = choice.index
            if index in self._finished:
                continue  # nothing after a finish belongs to that choice
            self._open.add(index)
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    out.append(Delta(index=index, content=delta.content))
                if delta.tool_calls:
                    self._gather(index, delta.tool_calls)
            if choice.finish_reason is not None:
                self._finish(index, choice.finish_reason, out)
        if chunk.usage is not None:
            self.usage = usage_of(chunk.usage)
        return out

    def end(self) -> list[Delta | Usage]:
        """The last items, at [DONE] or at end of body (see the module docstring)."""
        out: list[Delta | Usage] = []
        if self.done:
            for index in sorted(self._open):
                self._finish(index, "tool_calls" if self._calls.get(index) else "stop", out)
        elif not self._finished or self._open:
            raise UpstreamError("malformed", "the engine's stream ended before it finished", status=200)
        if self.usage is not None:
            out.append(self.usage)
        return out

    def _gather(self, index: int, fragments: list[ToolFragment]) -> None:
        calls = self._calls.setdefault(index, {})
        for fragment in fragments:
            position = fragment.index
            if position is None:  # engines that omit the index: a new id starts a new call
                position = len(calls) if fragment.id or not calls else max(calls)
            pending = calls.get(position)
            if pending is None:
                pending = calls[position] = _PendingCall()
            if fragment.id:
                pending.id = fragment.id
            function = fragment.function
            if function is not None:
                if function.name:
                    pending.name = (pending.name or "") + function.name
                if function.arguments:
                    pending.arguments.append(arguments_text(function.arguments))

    def _finish(self, index: int, reason: str, out: list) -> None:
        calls = self._calls.pop(index, None)
        if calls:
            whole: tuple[ToolCall, ...] = tuple(
                tool_call(c.id, c.name, "".join(c.arguments)) for _, c in sorted(calls.items()))
            out.append(Delta(index=index, tool_calls=whole))
        out.append(Delta(index=index, finish_reason=reason))
        self._open.discard(index)
        self._finished.add(index)

