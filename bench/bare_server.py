"""The baseline for bench/chat_throughput.py: the least an aiohttp.web JSON endpoint can do.

One POST route (any path) that decodes the JSON body with msgspec and answers
with a ~600-byte chat.completion-shaped JSON document, encoded with msgspec; with
"stream": true in the body it answers an Azure-shaped SSE stream instead (one chunk
per word, max_tokens words at most; used by bench/stream_throughput.py).
Same event-loop policy as `lapis serve` (uvloop when importable, else asyncio),
no middleware, no access log. Listens on 127.0.0.1 only.

    python bench/bare_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import msgspec
from aiohttp import web

_decode = msgspec.json.decode
_encode = msgspec.json.encode

CONTENT = "Each forest is strong and public. We slowly move the letter in this group."
FILTERS = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}


def answer(body: dict) -> bytes:
    messages = body.get("messages") or []
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    completion_tokens = int(body.get("max_tokens") or 16)
    return _encode({
        "id": "chatcmpl-xOhwgtdgBUW1gedYdQIHqP6N5Y8P5",
        "object": "chat.completion",
        "created": 1795750870,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_27bebe765c",
        "choices": [{
            "index": 0,
            "finish_reason": "length",
            "logprobs": None,
            "message": {"role": "assistant", "content": CONTENT, "refusal": None},
            "content_filter_results": FILTERS,
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    return b"data: " + _encode({
        "choices": [{"content_filter_results": {}, "delta": delta, "finish_reason": finish, "index": 0,
                     "logprobs": None}],
        "created": 1795750870, "id": "chatcmpl-xOhwgtdgBUW1gedYdQIHqP6N5Y8P5", "model": "gpt-4o-mini-2024-07-18",
        "object": "chat.completion.chunk", "system_fingerprint": "fp_27bebe765c",
    }) + b"\n\n"


async def stream(request: web.Request, body: dict) -> web.StreamResponse:
    """The same SSE sequence as an Azure chat stream: prompt filters, role, one chunk per word, finish, [DONE]."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
                         b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n')
    await response.write(_chunk({"content": "", "refusal": None, "role": "assistant"}))
    words = (CONTENT.split(" ") * 8)[: int(body.get("max_tokens") or 16)]
    for i, word in enumerate(words):
        await response.write(_chunk({"content": word if i == 0 else " " + word}))
    await response.write(_chunk({}, "length"))
    await response.write(b"data: [DONE]\n\n")
    return response


async def handle(request: web.Request) -> web.StreamResponse:
    try:
        body = _decode(await request.read())
    except msgspec.DecodeError:
        return web.Response(status=400, body=b'{"error":"bad json"}', content_type="application/json")
    if not isinstance(body, dict):
        return web.Response(status=400, body=b'{"error":"not an object"}', content_type="application/json")
    if body.get("stream"):
        return await stream(request, body)
    return web.Response(body=answer(body), content_type="application/json")


async def serve(port: int, app: web.Application, label: str = "bare server") -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024, reuse_address=True)
    await site.start()
    print(f"{label} listening on 127.0.0.1:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(port: int, app: web.Application, label: str = "bare server") -> None:
    """Serve `app` until stopped, on uvloop when installed (as `lapis serve` does)."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(port, app, label))
    except (KeyboardInterrupt, web.GracefulExit):
        pass


def main() -> None:
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    run(int(sys.argv[1]), app)


if __name__ == "__main__":
    main()
