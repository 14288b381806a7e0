"""A tiny case-insensitive router for ARM paths.

ARM matches path segments without regard to case (`az group create` sends
`resourcegroups`, the SDKs `resourceGroups`), which aiohttp's router does not
do. Templates are written as ARM documents them, with `{name}` segments:

    /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{account}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

Handler = Callable[..., Awaitable[Any]]

_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler


def compile_template(template: str) -> re.Pattern[str]:
    parts = []
    last = 0
    for match in _PARAM.finditer(template):
        parts.append(re.escape(template[last:match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/]+)")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE)


class ArmRouter:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        self.routes.append(Route(method.upper(), template, compile_template(template), handler))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, params, path_known). path_known is True when some route has
        this path but not this method (ARM then says the method is not allowed)."""
        path_known = False
        for route in self.routes:
            found = route.pattern.match(path)
            if not found:
                continue
            if route.method == method.upper():
                return route, found.groupdict(), True
            path_known = True
        return None, {}, path_known
