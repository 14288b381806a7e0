"""Server-sent events in Azure's sequence (§4.2 of the wire reference).

    1. an event with empty choices carrying prompt_filter_results
    2. per choice: a role chunk, content (or tool call) chunks, a finish_reason chunk
    3. a usage chunk, when stream_options.include_usage is set
    4. data: [DONE]

A failure after the first byte is sent in-band as `data: {"error":...}`
followed by [DONE], never a silent truncation. When the client goes away the
backend's generator is closed, which stops generation.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import msgspec
from aiohttp import web

from lapis.requestkeys import state_of
from lapis.tracing import stamp
from lapis.backends.base import ChatCall, Choice, UpstreamError, Usage
from lapis.dataplane.chat import completion_tokens
from lapis.dataplane.responses import ChunkMaker, TextChunkMaker
from lapis.diagnostics import content
from lapis.errors import ApiError
from lapis.errors import catalogue as errors

log = logging.getLogger("lapis.dataplane")
_encode = msgspec.json.encode
DONE = b"data: [DONE]\n\n"
# hook(request, (prompt, completion)), called just before a complete stream's [DONE]: usage metering
# journals the stream there (lapis.metrics.metering), so no client sees the end of an unmetered stream.
BEFORE_DONE: "web.AppKey[Callable[[web.Request, tuple[int, int]], None]]" = web.AppKey("before_done")


def event(payload: Any) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


async def stream_chat(request: web.Request, generator: Any, call: ChatCall, model_id: str, prompt_tokens: int,
                      include_usage: bool, headers: Mapping[str, str],
                      text: bool = False) -> tuple[web.StreamResponse, tuple[int, int]]:
    """Stream one call's items (a backend's chat_stream, or the balancer's
    iterator); `text` selects the legacy completions chunk shape.
    Returns the response and the (prompt, completion) tokens used: the engine's
    own usage when it sent one, else the prompt as counted and the completion
    tokens generated (all of them, or as many as were produced before the
    client left)."""
    response = web.StreamResponse(status=200, headers={
        **headers, "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
    stamp(request, response)  # the envelope cannot: the headers leave now
    await response.prepare(request)
    maker = (TextChunkMaker if text else ChunkMaker)(model_id, include_usage)
    await response.write(event(maker.first()))
    started: set[int] = set()
    pieces: dict[int, list[str]] = {}
    calls: dict[int, list[Any]] = {}
    finish: dict[int, str] = {}
    reported: Usage | None = None
    try:
        async for delta in generator:
            if isinstance(delta, Usage):
                reported = delta
                continue
            if delta.index not in started:
                started.add(delta.index)
                role = maker.role(delta.index)
                if role is not None:
                    await response.write(event(role))
            if delta.finish_reason is not None:
                finish[delta.index] = delta.finish_reason
            if delta.content:
                pieces.setdefault(delta.index, []).append(delta.content)
            if delta.tool_calls:
                calls.setdefault(delta.index, []).extend(delta.tool_calls)
            await response.write(event(maker.delta(delta)))
        used = _used(reported, prompt_tokens, pieces, calls, finish, call)
        if include_usage:
            await response.write(event(maker.usage(*used)))
        before_done = request.app.get(BEFORE_DONE)
        if before_done is not None:
            before_done(request, used)
        await response.write(DONE)
        return response, used
    except ConnectionError:
        log.info("client went away mid-stream; generation stopped")
        return response, _used(reported, prompt_tokens, pieces, calls, finish, call)
    except ApiError as exc:
        await _write_error(response, exc.json())
    except UpstreamError as exc:
        log.warning("engine failed mid-stream (request %s): %r", state_of(request).request_id, exc)
        await _write_error(response, errors.to_api_error(exc, state_of(request).request_id).json())
    except Exception:  # noqa: BLE001 - the status line is gone: report in-band
        request_id = state_of(request).request_id
        log.exception("stream failed (request %s)", request_id)
        await _write_error(response, errors.internal_error(request_id).json())
    finally:
        await generator.aclose()
        content.streamed(request, pieces, calls, text)  # the text sent, when a diagnostic setting asks
    return response, _used(reported, prompt_tokens, pieces, calls, finish, call)


def _used(reported: Usage | None, prompt_tokens: int, pieces: dict[int, list[str]], calls: dict[int, list[Any]],
          finish: dict[int, str], call: ChatCall) -> tuple[int, int]:
    if reported is not None:
        return reported.prompt_tokens, reported.completion_tokens
    return prompt_tokens, _generated(pieces, calls, finish, call)


def _generated(pieces: dict[int, list[str]], calls: dict[int, list[Any]], finish: dict[int, str],
               call: ChatCall) -> int:
    choices = [Choice(i, "".join(pieces.get(i, [])), finish.get(i, "stop"), tuple(calls.get(i, [])))
               for i in sorted(set(pieces) | set(calls))]
    return completion_tokens(choices, call.tokenizer)


async def _write_error(response: web.StreamResponse, body: Any) -> None:
    try:
        await response.write(event(body))
        await response.write(DONE)
    except ConnectionError:
        pass
