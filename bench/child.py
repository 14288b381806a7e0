"""The entry of the benchmarks' child load generators (pyload, paced_load, stream_load):
the JSON config in argv[1], `run(cfg)` on uvloop when installed, the JSON result on stdout."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Awaitable, Callable


def main(run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
    cfg = json.loads(sys.argv[1])
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        result = asyncio.run(run(cfg))
    else:
        result = uvloop.run(run(cfg))
    print(json.dumps(result), flush=True)
