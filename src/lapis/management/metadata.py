"""GET /metadata/endpoints: the cloud description `az cloud register` reads.

az asks for it (no credentials) when a cloud is registered with
--endpoint-resource-manager; it fails unless the answer is JSON with at least
`name`, `authentication.loginEndpoint`, `authentication.audiences[0]` and a
`suffixes` object (real-clients.md §6). Lapis is its own resource manager and
its own authority, at its base URL.
"""

from __future__ import annotations

from typing import Callable

from aiohttp import web

from lapis.services import Services


def add_routes(app: web.Application, services: Callable[[], Services]) -> None:
    async def endpoints(request: web.Request) -> web.Response:
        base = services().settings.base_url
        return web.json_response({
            "name": "Lapis",
            "resourceManager": f"{base}/",
            "authentication": {"loginEndpoint": base,
                               "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                               "tenant": "common", "identityProvider": "AAD"},
            "graph": f"{base}/", "portal": f"{base}/",
            "suffixes": {"storage": "core.windows.net", "keyVaultDns": "vault.azure.net"},
        })

    app.router.add_get("/metadata/endpoints", endpoints)
