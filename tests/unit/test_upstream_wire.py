"""The pieces under the HTTP backends: SSE decoding, chunk assembly, error mapping."""

from __future__ import annotations

import email.utils
import json
import time

import msgspec
import pytest

from lapis.backends import http
from lapis.backends.base import Delta, ToolCall, UpstreamError, Usage
from lapis.backends.chunks import StreamState
from lapis.backends.openai_wire import parse_completion
from lapis.backends.sse import EventTooLarge, SSEDecoder

STREAM = (b": keep-alive\r\n\r\n"
          b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\xc3\xa9\"}}]}\r\n\r\n"
          b"event: message\nid: 7\ndata: first line\ndata: second line\n\n"
          b"data:[DONE]\n\n")
EVENTS = [b'{"choices":[{"index":0,"delta":{"content":"h\xc3\xa9"}}]}', b"first line\nsecond line", b"[DONE]"]


def test_sse_any_split_gives_the_same_events() -> None:
    for cut in range(len(STREAM) + 1):
        decoder = SSEDecoder()
        events = decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:]) + decoder.close()
        assert events == EVENTS, cut
    decoder = SSEDecoder()
    assert [e for i in range(len(STREAM)) for e in decoder.feed(STREAM[i:i + 1])] == EVENTS


def test_sse_pending_event_is_delivered_at_the_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {}\n\ndata: [DONE]") == [b"{}"]
    assert decoder.close() == [b"[DONE]"]
    assert decoder.close() == []


def test_sse_endless_line_is_refused() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: " + b"x" * 200)


def chunk(*choices: dict, usage: dict | None = None) -> bytes:
    return json.dumps({"choices": list(choices), "usage": usage}).encode()


def test_stream_state_joins_tool_fragments_without_indexes() -> None:
    state = StreamState()
    out = state.feed(chunk({"index": 0, "delta": {"role": "assistant", "content": "",
                                                  "tool_calls": [{"id": "a", "function": {"name": "f"}}]}}))
    out += state.feed(chunk({"index": 0, "delta": {"tool_calls": [{"function": {"arguments": "{\"x\":"}}]}}))
    out += state.feed(chunk({"index": 0, "delta": {"tool_calls": [{"function": {"arguments": "1}"}}]}}))
    out += state.feed(chunk({"index": 0, "delta": {"tool_calls": [{"id": "b", "function": {"name": "g",
                                                                                          "arguments": {"y": 2}}}]}}))
    assert out == []  # held until the finish
    out = state.feed(chunk({"index": 0, "delta": {}, "finish_reason": "tool_calls"}))
    assert out == [Delta(0, tool_calls=(ToolCall("a", "f", '{"x":1}'), ToolCall("b", "g", '{"y": 2}'))),
                   Delta(0, finish_reason="tool_calls")]


def test_stream_state_end_rules() -> None:
    done = StreamState()
    done.feed(chunk({"index": 0, "delta": {"content": "a"}}))
    done.feed(chunk(usage={"prompt_tokens": 3, "completion_tokens": 1}))
    done.feed(chunk(usage={"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}}))
    done.feed(b"[DONE]")
    # the engine said it is done: the open choice is finished for it; the last usage wins
    assert done.end() == [Delta(0, finish_reason="stop"), Usage(3, 2, 1)]

    no_done = StreamState()
    no_done.feed(chunk({"index": 0, "delta": {"content": "a"}, "finish_reason": "length"}))
    assert no_done.end() == []  # finished, [DONE] left out: accepted

    cut = StreamState()
    cut.feed(chunk({"index": 0, "delta": {"content": "a"}}))
    with pytest.raises(UpstreamError) as raised:
        cut.end()
    assert raised.value.kind == "malformed"


@pytest.mark.parametrize("payload, kind", [
    (b'{"error": {"message": "CUDA out of memory"}}', "unavailable"),
    (b'{"choices": "many"}', "malformed"),
    (b'{"choices": [{"index": "zero"}]}', "malformed"),
    (b"[1, 2", "malformed"),
])
def test_stream_state_bad_chunks(payload: bytes, kind: str) -> None:
    with pytest.raises(UpstreamError) as raised:
        StreamState().feed(payload)
    assert raised.value.kind == kind


def test_completion_parsing() -> None:
    raw = msgspec.json.encode({"choices": [
        {"index": 1, "message": {"content": "b"}, "finish_reason": "length"},
        {"index": 0, "message": {"content": None, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}, "finish_reason": None}]})
    result = parse_completion(raw)
    assert [c.index for c in result.choices] == [0, 1] and result.usage is None
    call = result.choices[0].tool_calls[0]
    assert call.name == "f" and call.arguments == '{"a": 1}' and call.id.startswith("call_") and len(call.id) == 29
    assert result.choices[0].finish_reason == "tool_calls" and result.choices[1].finish_reason == "length"
    for bad in (b'{"choices": []}', b'{"object": "error"}', b"not json"):
        with pytest.raises(UpstreamError) as raised:
            parse_completion(bad)
        assert raised.value.kind == "malformed"


def test_retry_after_headers() -> None:
    assert http.retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert http.retry_after({"retry-after": "3"}) == 3.0
    assert http.retry_after({"retry-after-ms": "soon", "retry-after": "2.5"}) == 2.5
    assert http.retry_after({"retry-after": "whenever"}) is None
    assert http.retry_after({}) is None
    date = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < http.retry_after({"retry-after": date}) <= 120


@pytest.mark.parametrize("body, message", [
    (b'{"error": {"message": "bad model", "type": "invalid_request_error"}}', "bad model"),
    (b'{"error": "model not found"}', "model not found"),
    (b'{"object": "error", "message": "too long", "code": 400}', "too long"),
    (b'{"detail": "Not Found"}', "Not Found"),
    (b'{"error": "invalid_client", "error_description": "AADSTS7000215"}', "AADSTS7000215"),
    (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
])
def test_error_message_shapes(body: bytes, message: str) -> None:
    assert http.error_message(body) == message


@pytest.mark.parametrize("status, kind", [(429, "rate_limited"), (408, "timeout"), (500, "unavailable"),
                                          (502, "unavailable"), (503, "unavailable"), (400, "rejected"),
                                          (401, "unavailable"), (403, "unavailable"), (404, "unavailable"),
                                          (422, "rejected"), (302, "malformed")])
def test_status_mapping(status: int, kind: str) -> None:
    error = http.status_error(status, {"retry-after": "4"}, b'{"error": {"message": "m"}}')
    assert (error.kind, error.status) == (kind, status)
    refused = status in (401, 403, 404)  # Lapis's own call was refused: fail over, no retry advice
    assert error.retry_after == (4.0 if kind in ("rate_limited", "unavailable") and not refused else None)
